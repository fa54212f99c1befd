mod helpers;

mod cycle;
mod import;
mod nudges;
mod ticks;
