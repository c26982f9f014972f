//! Broadcasts: one template message from a vendor to a segment of its customers.
//!
//! Reading order: [`Segment`] (who), [`BroadcastTemplate`] (what, as Meta's approved
//! template with text parameters), [`BroadcastState`] and its transitions (pause, resume,
//! cancel, complete). The shell (the API, the feeder in the `loyalty` crate, the notifier)
//! stores these as JSON and text; every value is built only through a `parse`/constructor
//! that enforces Meta's limits and ours, so a stored one is valid.
//!
//! Decisions:
//! - **Broadcasts are marketing**: Meta allows them only as approved templates, inside the
//!   customer-service window or not, so a broadcast is always a template (never free-form).
//! - **The segment is data** (`kind` + its fields), each kind a variant here and one SQL
//!   predicate in `schema::broadcasts`. `birthday_month` is stored with its month resolved
//!   (the shell fills in the current month in the tenant's time zone when none is given),
//!   so the stored segment says who it was for.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Longest `inactive_days` accepted: ten years.
pub const INACTIVE_DAYS_MAX: u32 = 3_650;
/// Meta's limit on a template name.
pub const TEMPLATE_NAME_CHARS_MAX: usize = 512;
/// Text parameters of one template, at most (Meta allows more; a broadcast needs few).
pub const TEMPLATE_PARAMETERS_MAX: usize = 10;
/// One text parameter, at most (Meta's limit for a body parameter is 1,024 characters).
pub const TEMPLATE_PARAMETER_CHARS_MAX: usize = 1_024;
/// A broadcast's name, at most (the vendor's label; never sent to customers).
pub const BROADCAST_NAME_CHARS_MAX: usize = 120;

/// Who a broadcast is for. Recipients are resolved once, when the broadcast is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Segment {
    /// Every WhatsApp member of the vendor (the opted-out ones are counted as skipped).
    AllOptedIn,
    /// Enrolled at least `days` days ago and no purchase in the last `days` days.
    InactiveDays { days: u32 },
    /// A balance (the balances read model) of at least `points`.
    BalanceAtLeast { points: i64 },
    /// Enrolled between `from` and `to`, both dates included (UTC).
    JoinedBetween { from: NaiveDate, to: NaiveDate },
    /// At tier `tier` (an id of the tenant's ladder). `includes_untiered` is set by the shell
    /// when `tier` is the ladder's base, which customers never moved from also hold.
    Tier {
        tier: String,
        #[serde(default)]
        includes_untiered: bool,
    },
    /// Customers whose birthday (the read model's month) falls in `month` (1–12). 29
    /// February birthdays are in February.
    BirthdayMonth { month: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSegment {
    #[error("days must be 1 to {INACTIVE_DAYS_MAX}")]
    Days,
    #[error("points must be 0 or more")]
    Points,
    #[error("from must not be after to")]
    DateRange,
    #[error("month must be 1 to 12")]
    Month,
}

impl Segment {
    pub fn inactive_days(days: u32) -> Result<Segment, InvalidSegment> {
        if !(1..=INACTIVE_DAYS_MAX).contains(&days) {
            return Err(InvalidSegment::Days);
        }
        Ok(Segment::InactiveDays { days })
    }

    pub fn balance_at_least(points: i64) -> Result<Segment, InvalidSegment> {
        if points < 0 {
            return Err(InvalidSegment::Points);
        }
        Ok(Segment::BalanceAtLeast { points })
    }

    pub fn joined_between(from: NaiveDate, to: NaiveDate) -> Result<Segment, InvalidSegment> {
        if from > to {
            return Err(InvalidSegment::DateRange);
        }
        Ok(Segment::JoinedBetween { from, to })
    }

    pub fn birthday_month(month: u8) -> Result<Segment, InvalidSegment> {
        if !(1..=12).contains(&month) {
            return Err(InvalidSegment::Month);
        }
        Ok(Segment::BirthdayMonth { month })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Segment::AllOptedIn => "all_opted_in",
            Segment::InactiveDays { .. } => "inactive_days",
            Segment::BalanceAtLeast { .. } => "balance_at_least",
            Segment::JoinedBetween { .. } => "joined_between",
            Segment::Tier { .. } => "tier",
            Segment::BirthdayMonth { .. } => "birthday_month",
        }
    }
}

/// An approved template's name: lower-case letters, digits and underscores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TemplateName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {TEMPLATE_NAME_CHARS_MAX} lower-case letters, digits or underscores (an approved template's name)")]
pub struct InvalidTemplateName;

impl TemplateName {
    pub fn parse(raw: &str) -> Result<Self, InvalidTemplateName> {
        let valid = (1..=TEMPLATE_NAME_CHARS_MAX).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(InvalidTemplateName);
        }
        Ok(TemplateName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TemplateName {
    type Error = InvalidTemplateName;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        TemplateName::parse(&raw)
    }
}

impl From<TemplateName> for String {
    fn from(name: TemplateName) -> String {
        name.0
    }
}

/// A template language code as Meta writes them: `en`, `en_US`, `pt_BR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TemplateLanguage(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a template language code such as en, en_US or pt_BR")]
pub struct InvalidTemplateLanguage;

impl TemplateLanguage {
    pub fn parse(raw: &str) -> Result<Self, InvalidTemplateLanguage> {
        let (language, region) = match raw.split_once('_') {
            Some((language, region)) => (language, Some(region)),
            None => (raw, None),
        };
        let language_ok =
            (2..=3).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_lowercase());
        let region_ok = region.is_none_or(|r| {
            (2..=4).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if !(language_ok && region_ok) {
            return Err(InvalidTemplateLanguage);
        }
        Ok(TemplateLanguage(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TemplateLanguage {
    type Error = InvalidTemplateLanguage;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        TemplateLanguage::parse(&raw)
    }
}

impl From<TemplateLanguage> for String {
    fn from(language: TemplateLanguage) -> String {
        language.0
    }
}

/// One text parameter of the template's body (`{{1}}`, `{{2}}`, …). Meta refuses newlines,
/// tabs and more than four consecutive spaces in a parameter, and an empty one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TemplateParameter(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {TEMPLATE_PARAMETER_CHARS_MAX} characters without newlines, tabs or more than four spaces in a row")]
pub struct InvalidTemplateParameter;

impl TemplateParameter {
    pub fn parse(raw: &str) -> Result<Self, InvalidTemplateParameter> {
        let length = raw.chars().count();
        let valid = (1..=TEMPLATE_PARAMETER_CHARS_MAX).contains(&length)
            && !raw.trim().is_empty()
            && !raw
                .chars()
                .any(|c| c == '\n' || c == '\t' || c.is_control())
            && !raw.contains("     ");
        if !valid {
            return Err(InvalidTemplateParameter);
        }
        Ok(TemplateParameter(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TemplateParameter {
    type Error = InvalidTemplateParameter;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        TemplateParameter::parse(&raw)
    }
}

impl From<TemplateParameter> for String {
    fn from(parameter: TemplateParameter) -> String {
        parameter.0
    }
}

/// What a broadcast sends: an approved template, its language and its body's text
/// parameters. Stored as the `body` of the broadcast's `whatsapp_outbox` rows (kind
/// `broadcast`), from which the notifier builds Meta's template message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastTemplate {
    pub name: TemplateName,
    pub language: TemplateLanguage,
    #[serde(default)]
    pub parameters: Vec<TemplateParameter>,
}

/// Where a broadcast is. `Running` is fed to the outbox; `Paused` is not (and its unsent
/// outbox rows are withdrawn); `Completed` and `Cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastState {
    Running,
    Paused,
    Completed,
    Cancelled,
}

/// A vendor's request to change a broadcast's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateChange {
    Pause,
    Resume,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} broadcast cannot be {wanted}")]
pub struct StateChangeRefused {
    pub from: &'static str,
    pub wanted: &'static str,
}

impl BroadcastState {
    pub fn as_str(self) -> &'static str {
        match self {
            BroadcastState::Running => "running",
            BroadcastState::Paused => "paused",
            BroadcastState::Completed => "completed",
            BroadcastState::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "running" => Some(BroadcastState::Running),
            "paused" => Some(BroadcastState::Paused),
            "completed" => Some(BroadcastState::Completed),
            "cancelled" => Some(BroadcastState::Cancelled),
            _ => None,
        }
    }

    /// The state after `change`. Asking for the state a broadcast is already in changes
    /// nothing and succeeds (a retried pause is not an error); a final state refuses every
    /// other change.
    pub fn apply(self, change: StateChange) -> Result<BroadcastState, StateChangeRefused> {
        use BroadcastState as S;
        use StateChange as C;
        let refused = |wanted| {
            Err(StateChangeRefused {
                from: self.as_str(),
                wanted,
            })
        };
        match (self, change) {
            (S::Running | S::Paused, C::Pause) => Ok(S::Paused),
            (S::Running | S::Paused, C::Resume) => Ok(S::Running),
            (S::Running | S::Paused | S::Cancelled, C::Cancel) => Ok(S::Cancelled),
            (S::Completed | S::Cancelled, C::Pause) => refused("paused"),
            (S::Completed | S::Cancelled, C::Resume) => refused("resumed"),
            (S::Completed, C::Cancel) => refused("cancelled"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_changes_follow_the_table() {
        use BroadcastState as S;
        use StateChange as C;
        let cases = [
            (S::Running, C::Pause, Some(S::Paused)),
            (S::Running, C::Resume, Some(S::Running)),
            (S::Running, C::Cancel, Some(S::Cancelled)),
            (S::Paused, C::Pause, Some(S::Paused)),
            (S::Paused, C::Resume, Some(S::Running)),
            (S::Paused, C::Cancel, Some(S::Cancelled)),
            (S::Completed, C::Pause, None),
            (S::Completed, C::Resume, None),
            (S::Completed, C::Cancel, None),
            (S::Cancelled, C::Pause, None),
            (S::Cancelled, C::Resume, None),
            (S::Cancelled, C::Cancel, Some(S::Cancelled)),
        ];
        for (from, change, expected) in cases {
            assert_eq!(from.apply(change).ok(), expected, "{from:?} {change:?}");
            assert_eq!(BroadcastState::parse(from.as_str()), Some(from));
        }
    }

    #[test]
    fn segments_keep_their_limits() {
        assert_eq!(Segment::inactive_days(0), Err(InvalidSegment::Days));
        assert_eq!(
            Segment::inactive_days(INACTIVE_DAYS_MAX + 1),
            Err(InvalidSegment::Days)
        );
        assert!(Segment::inactive_days(30).is_ok());
        assert_eq!(Segment::balance_at_least(-1), Err(InvalidSegment::Points));
        assert!(Segment::balance_at_least(0).is_ok());
        let day = |d| NaiveDate::from_ymd_opt(2026, 1, d).unwrap();
        assert_eq!(
            Segment::joined_between(day(2), day(1)),
            Err(InvalidSegment::DateRange)
        );
        assert!(Segment::joined_between(day(1), day(1)).is_ok());
        assert_eq!(Segment::InactiveDays { days: 30 }.kind(), "inactive_days");
        assert_eq!(Segment::birthday_month(0), Err(InvalidSegment::Month));
        assert_eq!(Segment::birthday_month(13), Err(InvalidSegment::Month));
        assert_eq!(
            Segment::birthday_month(2).map(|s| s.kind()),
            Ok("birthday_month")
        );
    }

    #[test]
    fn template_parts_are_what_meta_accepts() {
        assert!(TemplateName::parse("spring_offer_2").is_ok());
        for bad in ["", "Spring", "spring offer", "spring-offer", "é"] {
            assert!(TemplateName::parse(bad).is_err(), "{bad}");
        }
        assert!(TemplateName::parse(&"a".repeat(TEMPLATE_NAME_CHARS_MAX + 1)).is_err());
        for good in ["en", "en_US", "pt_BR", "zh_HK"] {
            assert!(TemplateLanguage::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "english", "EN", "en_", "e"] {
            assert!(TemplateLanguage::parse(bad).is_err(), "{bad}");
        }
        assert!(TemplateParameter::parse("Ada").is_ok());
        for bad in ["", "   ", "two\nlines", "a\tb", "five     spaces"] {
            assert!(TemplateParameter::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TemplateParameter::parse(&"x".repeat(TEMPLATE_PARAMETER_CHARS_MAX + 1)).is_err());
    }
}
