mod helpers;

mod cycle;
mod docs;
mod import;
mod nudges;
mod ticks;
