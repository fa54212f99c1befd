mod helpers;

mod api;
mod api_desk;
mod budgets;
mod business;
mod chaos;
mod chaos_delivery;

mod complaints;
mod cycle;
mod deliveries;
mod delivery_desk;
mod docs;
mod features;
mod import;
mod models;
mod nudges;
mod ops;
mod playbook;
mod receivers;
mod scores;
mod shards;
mod sources;
mod tables;
mod ticks;
mod training;
mod web;
