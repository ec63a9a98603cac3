//! The clock: the scheme's dates are Hong Kong dates (UTC+8, no daylight saving). Commands
//! take today's date from a [`Clock`], so a test can set the day.

use std::sync::{Arc, Mutex};

use chrono::{NaiveDate, TimeDelta, Utc};

/// Today's date in Hong Kong.
pub fn today_in_hong_kong() -> NaiveDate {
    (Utc::now() + TimeDelta::hours(8)).date_naive()
}

#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> NaiveDate + Send + Sync>);

impl Clock {
    /// The real clock, in Hong Kong.
    pub fn hong_kong() -> Self {
        Clock(Arc::new(today_in_hong_kong))
    }

    /// A clock that reads the day from `day`, which its owner moves.
    pub fn set_by(day: Arc<Mutex<NaiveDate>>) -> Self {
        Clock(Arc::new(move || day.lock().map_or_else(|_| today_in_hong_kong(), |day| *day)))
    }

    pub fn today(&self) -> NaiveDate {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock(today = {})", self.today())
    }
}
