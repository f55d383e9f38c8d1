//! Wire surfaces. Each surface parses its own inputs, authenticates, calls the service, and maps
//! outcomes to its own codes in exactly one place. No business rules live here.

pub mod body;
pub mod dashboard;
pub mod health;
pub mod html;
pub mod inbox;
pub mod openapi;
pub mod receipts;
pub mod request_id;
pub mod v1;
pub mod v2;

use std::sync::Arc;

use crate::auth::apps::AppCache;
use crate::auth::KeyCache;
use crate::delivery::Routes;
use crate::http::refusals::Refusals;
use crate::service::VerifyService;
use crate::store::DeliveryLog;

/// What every handler can reach. axum clones the state for every request, so it is one `Arc`:
/// one shared counter to touch instead of one per part.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub service: Arc<VerifyService>,
    pub keys: Arc<KeyCache>,
    /// Whether the server speaks HTTPS itself: the scheme of the links it writes.
    pub tls: bool,
    /// Verify v2 templates.
    pub templates: Arc<dyn crate::store::TemplateStore>,
    /// Verify v2 applications, for JWTs.
    pub apps: Arc<AppCache>,
    /// Present only while the inbox channel is configured; its routes exist only then.
    pub inbox: Option<inbox::Inbox>,
    /// Requests refused before authentication, logged in aggregate.
    pub refusals: Arc<Refusals>,
    /// The channels, for the receipts their gateways post back.
    pub delivery: Arc<Routes>,
    pub deliveries: Arc<dyn DeliveryLog>,
    /// The dashboard's own state (its store, session key and login throttle).
    pub dashboard: dashboard::Dashboard,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
