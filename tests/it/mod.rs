mod helpers;

mod cycle;
mod docs;
mod import;
mod models;
mod nudges;
mod sources;
mod ticks;
mod training;
