//! Delivery: the router (which channels carry a message), the failover policy (what happens
//! when one fails), and the dispatcher that works through deliveries and records every try.
//! The scheduler decides *when* an event fires and hands its delivery here; receipts come in
//! through `api/receipts.rs` or a channel's own connection, and are recorded by `receipts`.

pub mod dispatch;
pub mod policy;
pub mod receipts;
pub mod router;

pub use dispatch::{spawn_dispatcher, Dispatcher};
pub use router::{Router, Routes};
