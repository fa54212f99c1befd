mod helpers;

mod cycle;
mod docs;
mod import;
mod models;
mod nudges;
mod ticks;
mod training;
