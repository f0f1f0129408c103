//! Where the attempts of one call went, so that a retry or a hedged attempt goes to an
//! endpoint the call has not tried yet.
//!
//! The executor puts one [`AttemptRoute`] into the request extensions of every attempt of
//! a call that may send more than one (tonic carries them into the `http::Request`). A
//! `Pool` reads it when it picks an endpoint: endpoints the call has
//! tried rank below every untried one in rotation (but above ejected ones), and it notes
//! the endpoint it chose. A transport that does not know the route ignores it.

use std::sync::{Arc, Mutex};

/// An endpoint's identity: unique in the process, never reused.
pub(crate) type EndpointKey = u64;

/// The endpoints tried by the attempts of one call. Clones share the list.
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(feature = "discovery"), allow(dead_code))]
pub(crate) struct AttemptRoute {
    tried: Arc<Mutex<Vec<EndpointKey>>>,
}

#[cfg_attr(not(feature = "discovery"), allow(dead_code))]
impl AttemptRoute {
    /// Records that an attempt of this call went to `endpoint`.
    pub(crate) fn chose(&self, endpoint: EndpointKey) {
        let mut tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
        if !tried.contains(&endpoint) {
            tried.push(endpoint);
        }
    }

    /// Whether an attempt of this call already went to `endpoint`.
    pub(crate) fn tried(&self, endpoint: EndpointKey) -> bool {
        self.tried
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&endpoint)
    }

    /// The endpoints tried so far, in order.
    #[cfg(test)]
    pub(crate) fn history(&self) -> Vec<EndpointKey> {
        self.tried.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_what_was_tried() {
        let route = AttemptRoute::default();
        let attempt = route.clone();
        attempt.chose(7);
        attempt.chose(9);
        attempt.chose(7);
        assert!(route.tried(7) && route.tried(9) && !route.tried(8));
        assert_eq!(route.history(), vec![7, 9]);
    }
}
