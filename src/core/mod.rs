//! The shared core both data planes and the API ask: "traffic arrived on proxy P from S:
//! which session is this, and where does it go?" Pure domain code: no sockets, no tokio, no
//! SQL, no clock (time is passed in).

pub mod allocator;
pub mod callback;
pub mod carriers;
pub mod datetime;
pub mod e164;
pub mod engine;
pub mod error;
pub mod model;
pub mod reports;
pub mod routing;
pub mod sid;
pub mod store;

pub use e164::E164;
pub use engine::Engine;
pub use error::CoreError;
pub use sid::{Sid, SidKind};
