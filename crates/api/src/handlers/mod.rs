//! Route handlers, one module per resource.

pub mod audit;
pub mod jobs;
pub mod list;
pub mod notify;
pub mod server;
