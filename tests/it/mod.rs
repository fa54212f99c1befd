mod helpers;

mod cycle;
mod docs;
mod import;
mod models;
mod nudges;
mod playbook;
mod ticks;
mod training;
