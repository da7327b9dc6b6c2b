//! Time filters (product.md section 5): `--as-of` (recorded_at), `--valid-at` (occurred_at)
//! and `--at-position`. They combine as an intersection; selected events are applied in
//! position order.

use super::{Event, Position, Timestamp};

/// Which events a read sees. The default sees everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only events with recorded_at <= this (what the ledger knew then).
    pub as_of: Option<Timestamp>,
    /// Only events with occurred_at <= this (what had happened by then).
    pub valid_at: Option<Timestamp>,
    /// Only events with position <= this.
    pub at_position: Option<Position>,
}

impl Filter {
    /// True when the filter admits every event.
    pub fn is_unfiltered(&self) -> bool {
        self.as_of.is_none() && self.valid_at.is_none() && self.at_position.is_none()
    }

    /// Whether `event` is visible through the filter.
    pub fn admits(&self, event: &Event) -> bool {
        self.as_of.is_none_or(|t| event.recorded_at <= t)
            && self.valid_at.is_none_or(|t| event.occurred_at <= t)
            && self.at_position.is_none_or(|p| event.position <= p)
    }

    /// The filter in words, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.as_of {
            parts.push(format!("as of {t}"));
        }
        if let Some(t) = self.valid_at {
            parts.push(format!("valid at {t}"));
        }
        if let Some(p) = self.at_position {
            parts.push(format!("at position {p}"));
        }
        if parts.is_empty() {
            "now".to_owned()
        } else {
            parts.join(", ")
        }
    }
}
