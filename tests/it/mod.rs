mod helpers;

mod api;
mod api_desk;

mod cycle;
mod docs;
mod import;
mod models;
mod nudges;
mod sources;
mod ticks;
mod training;
mod web;
