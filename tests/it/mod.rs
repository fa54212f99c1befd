mod helpers;

mod api;
mod api_desk;
mod budgets;
mod business;
mod chaos;

mod complaints;
mod cycle;
mod docs;
mod features;
mod import;
mod models;
mod nudges;
mod ops;
mod playbook;
mod scores;
mod sources;
mod tables;
mod ticks;
mod training;
mod web;
