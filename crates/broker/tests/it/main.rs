//! The broker's integration tests: one test binary, a module per area.

mod broker;
mod hostile;
mod replicated;
mod sim;
mod subscription_alter;
