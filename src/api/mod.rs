//! Wire surfaces. Each surface parses its own inputs, authenticates, calls the service, and maps
//! outcomes to its own codes in exactly one place. No business rules live here.

pub mod health;
pub mod inbox;
pub mod v1;

use std::sync::Arc;

use crate::auth::KeyCache;
use crate::service::VerifyService;
use crate::store::InboxLog;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<VerifyService>,
    pub keys: Arc<KeyCache>,
    /// Present only while the inbox channel is configured; its routes exist only then.
    pub inbox: Option<Arc<dyn InboxLog>>,
}
