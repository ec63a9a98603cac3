//! The clock: the scheme's dates are Hong Kong dates (UTC+8, no daylight saving).

use chrono::{NaiveDate, TimeDelta, Utc};

/// Today's date in Hong Kong.
pub fn today_in_hong_kong() -> NaiveDate {
    (Utc::now() + TimeDelta::hours(8)).date_naive()
}
