//! From what the customer sent to a [`Request`]: free-text keywords (case-insensitive,
//! trimmed, tolerant of one typo in longer words), vendor codes, and the namespaced ids of
//! our own buttons and list rows.
//!
//! Typo tolerance is the Damerau–Levenshtein distance (optimal string alignment: one
//! insertion, deletion, substitution or swap of neighbours) of at most 1, tried only when
//! both the word and the keyword have at least [`FUZZY_LETTERS_MIN`] letters, and only when
//! every keyword within reach means the same thing (`HELO` is one step from both HELP and
//! HELLO, so it matches neither). STOP and START are exact only: one step from STOP lie
//! SHOP, STEP and SPOT, one from START lies STAR and SMART, and an opt-out is not a thing
//! to guess.

use super::{RewardId, VendorCode};
use crate::ids::TenantId;

/// Words shorter than this must match a keyword exactly.
pub const FUZZY_LETTERS_MIN: usize = 4;
/// Longest text we try to understand; no keyword or `JOIN <code>` comes near it, and the
/// bound keeps the edit-distance work small whatever a customer pastes.
pub const TEXT_CHARS_MAX: usize = 64;
/// Highest rewards page an id may ask for.
pub const PAGE_MAX: u16 = 100;

/// What the customer asked for, whatever the way they asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Points,
    Rewards,
    RewardsPage(u16),
    ChooseReward(RewardId),
    ConfirmReward(RewardId),
    Yes,
    No,
    Next,
    Previous,
    History,
    Help,
    Menu,
    Vendors,
    ChooseVendor(TenantId),
    /// `JOIN` followed by a valid code, or `None` for `JOIN` alone or with a malformed code.
    Join(Option<VendorCode>),
    /// A bare word that is a well-formed vendor code and no keyword.
    BareCode(VendorCode),
    Stop,
    Start,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Request(SimpleRequest),
    Join,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SimpleRequest {
    Points,
    Rewards,
    Yes,
    No,
    Next,
    Previous,
    History,
    Help,
    Menu,
    Vendors,
    Stop,
    Start,
}

impl SimpleRequest {
    fn request(self) -> Request {
        match self {
            SimpleRequest::Points => Request::Points,
            SimpleRequest::Rewards => Request::Rewards,
            SimpleRequest::Yes => Request::Yes,
            SimpleRequest::No => Request::No,
            SimpleRequest::Next => Request::Next,
            SimpleRequest::Previous => Request::Previous,
            SimpleRequest::History => Request::History,
            SimpleRequest::Help => Request::Help,
            SimpleRequest::Menu => Request::Menu,
            SimpleRequest::Vendors => Request::Vendors,
            SimpleRequest::Stop => Request::Stop,
            SimpleRequest::Start => Request::Start,
        }
    }
}

/// (word, meaning, typo-tolerant).
const KEYWORDS: &[(&str, Keyword, bool)] = {
    use Keyword::{Join, Request as R};
    use SimpleRequest::*;
    &[
        ("POINTS", R(Points), true),
        ("POINT", R(Points), true),
        ("BALANCE", R(Points), true),
        ("BAL", R(Points), true),
        ("REWARDS", R(Rewards), true),
        ("REWARD", R(Rewards), true),
        ("REDEEM", R(Rewards), true),
        ("YES", R(Yes), true),
        ("Y", R(Yes), true),
        ("CONFIRM", R(Yes), true),
        ("NO", R(No), true),
        ("N", R(No), true),
        ("CANCEL", R(No), true),
        ("NEXT", R(Next), true),
        ("MORE", R(Next), true),
        ("PREVIOUS", R(Previous), true),
        ("PREV", R(Previous), true),
        ("BACK", R(Previous), true),
        ("HISTORY", R(History), true),
        ("HELP", R(Help), true),
        ("MENU", R(Menu), true),
        ("HI", R(Menu), true),
        ("HELLO", R(Menu), true),
        ("VENDORS", R(Vendors), true),
        ("SWITCH", R(Vendors), true),
        ("STOP", R(Stop), false),
        ("START", R(Start), false),
        ("JOIN", Join, true),
    ]
};

/// Understands a free-text message.
pub fn parse_text(raw: &str) -> Request {
    if raw.chars().count() > TEXT_CHARS_MAX {
        return Request::Unknown;
    }
    let upper = raw.to_uppercase();
    let trimmed = upper.trim_matches(|c: char| c.is_whitespace() || ".,!?;:".contains(c));
    let words: Vec<&str> = trimmed.split_whitespace().collect();
    match words.as_slice() {
        [word] => match keyword(word) {
            Some(Keyword::Request(simple)) => simple.request(),
            Some(Keyword::Join) => Request::Join(None),
            None => match VendorCode::parse(word) {
                Ok(code) => Request::BareCode(code),
                Err(_) => Request::Unknown,
            },
        },
        [first, code] if keyword(first) == Some(Keyword::Join) => {
            Request::Join(VendorCode::parse(code).ok())
        }
        _ => Request::Unknown,
    }
}

/// Understands the id of one of our buttons or list rows, or a template quick-reply
/// payload. Ids are replayable (an old message can be tapped days later), so an id names
/// what was offered, and [`super::step`] re-checks it against the state.
pub fn parse_id(raw: &str) -> Request {
    let raw = raw.trim();
    let parse_reward = |id: &str| RewardId::parse(id).ok();
    if let Some(rest) = raw.strip_prefix("reward:") {
        return parse_reward(rest).map_or(Request::Unknown, Request::ChooseReward);
    }
    if let Some(rest) = raw.strip_prefix("confirm:") {
        return parse_reward(rest).map_or(Request::Unknown, Request::ConfirmReward);
    }
    if let Some(rest) = raw.strip_prefix("rewards:page:") {
        return match rest.parse::<u16>() {
            Ok(page) if (1..=PAGE_MAX).contains(&page) => Request::RewardsPage(page),
            _ => Request::Unknown,
        };
    }
    if let Some(rest) = raw.strip_prefix("vendor:") {
        return TenantId::parse(rest).map_or(Request::Unknown, Request::ChooseVendor);
    }
    match raw {
        "menu:points" => Request::Points,
        "menu:rewards" => Request::Rewards,
        "menu:history" => Request::History,
        "menu:help" => Request::Help,
        "menu:menu" => Request::Menu,
        "menu:vendors" => Request::Vendors,
        "menu:stop" => Request::Stop,
        "menu:start" => Request::Start,
        "cancel" => Request::No,
        // A template's quick-reply payload may be a plain keyword ("POINTS").
        other => match parse_text(other) {
            // A payload is never a vendor code: only the customer's own words are.
            Request::BareCode(_) | Request::Join(_) => Request::Unknown,
            request => request,
        },
    }
}

/// The keyword `word` (already upper-case) means, exactly or within one typo.
fn keyword(word: &str) -> Option<Keyword> {
    if let Some((_, meaning, _)) = KEYWORDS.iter().find(|(k, _, _)| *k == word) {
        return Some(*meaning);
    }
    if word.chars().count() < FUZZY_LETTERS_MIN {
        return None;
    }
    let mut found: Option<Keyword> = None;
    for (k, meaning, tolerant) in KEYWORDS {
        if !tolerant || k.len() < FUZZY_LETTERS_MIN || !within_one_edit(word, k) {
            continue;
        }
        match found {
            Some(other) if other != *meaning => return None,
            _ => found = Some(*meaning),
        }
    }
    found
}

fn within_one_edit(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    a.len().abs_diff(b.len()) <= 1 && damerau_levenshtein(&a, &b) <= 1
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
/// two neighbours each cost 1. Quadratic, so callers bound their inputs.
pub fn damerau_levenshtein(a: &[char], b: &[char]) -> usize {
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[n][m]
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn code(raw: &str) -> VendorCode {
        VendorCode::parse(raw).unwrap()
    }

    #[test]
    fn keywords_exact_case_and_space_insensitive() {
        let cases = [
            ("POINTS", Request::Points),
            ("points", Request::Points),
            ("  Points  ", Request::Points),
            ("points?", Request::Points),
            ("point", Request::Points),
            ("bal", Request::Points),
            ("Balance", Request::Points),
            ("rewards", Request::Rewards),
            ("reward", Request::Rewards),
            ("redeem", Request::Rewards),
            ("history", Request::History),
            ("help", Request::Help),
            ("menu", Request::Menu),
            ("hi", Request::Menu),
            ("Hello!", Request::Menu),
            ("stop", Request::Stop),
            ("START", Request::Start),
            ("yes", Request::Yes),
            ("y", Request::Yes),
            ("confirm", Request::Yes),
            ("no", Request::No),
            ("cancel", Request::No),
            ("next", Request::Next),
            ("more", Request::Next),
            ("back", Request::Previous),
            ("prev", Request::Previous),
            ("vendors", Request::Vendors),
            ("switch", Request::Vendors),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_text(text), expected, "{text:?}");
        }
    }

    #[test]
    fn one_typo_is_tolerated_in_words_of_four_letters_or_more() {
        let cases = [
            ("POINTZ", Request::Points),   // substitution
            ("PONTS", Request::Points),    // deletion
            ("POIINTS", Request::Points),  // insertion
            ("PIONTS", Request::Points),   // swap of neighbours
            ("balence", Request::Points),  // substitution
            ("rewrds", Request::Rewards),  // deletion
            ("REWADRS", Request::Rewards), // swap
            ("histroy", Request::History), // swap
            ("hlep", Request::Help),       // swap
            ("menue", Request::Menu),      // insertion
            ("helloo", Request::Menu),     // insertion
            ("cancle", Request::No),       // swap
            ("confrim", Request::Yes),     // swap
            ("jion abc", Request::Join(Some(code("ABC")))),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_text(text), expected, "{text:?}");
        }
    }

    #[test]
    fn near_misses_do_not_match() {
        let cases = [
            // Two or more edits away: a vendor code, if well-formed, else nothing.
            ("POINTLESS", Request::BareCode(code("POINTLESS"))),
            ("PNTS", Request::BareCode(code("PNTS"))),
            ("REWARDSSS", Request::BareCode(code("REWARDSSS"))),
            // Short words are exact only.
            ("BL", Request::Unknown),
            ("HO", Request::Unknown),
            ("YS", Request::Unknown),
            ("BAK", Request::BareCode(code("BAK"))),
            // Ambiguous: one step from HELP and from HELLO.
            ("HELO", Request::BareCode(code("HELO"))),
            // STOP and START are exact only.
            ("SHOP", Request::BareCode(code("SHOP"))),
            ("STPO", Request::BareCode(code("STPO"))),
            ("STAR", Request::BareCode(code("STAR"))),
            ("STARTS", Request::BareCode(code("STARTS"))),
            // Sentences are not keywords.
            ("my points please", Request::Unknown),
            ("points please", Request::Unknown),
            ("", Request::Unknown),
            ("   ", Request::Unknown),
            ("👍", Request::Unknown),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_text(text), expected, "{text:?}");
        }
    }

    #[test]
    fn vendor_codes_are_case_insensitive_and_well_formed() {
        assert_eq!(
            parse_text("shopcode123"),
            Request::BareCode(code("SHOPCODE123"))
        );
        assert_eq!(
            parse_text("ShopCode123"),
            Request::BareCode(code("SHOPCODE123"))
        );
        assert_eq!(
            parse_text("join shopcode123"),
            Request::Join(Some(code("SHOPCODE123")))
        );
        assert_eq!(
            parse_text("  JOIN   ShopCode123 "),
            Request::Join(Some(code("SHOPCODE123")))
        );
        assert_eq!(parse_text("join"), Request::Join(None));
        assert_eq!(parse_text("join shop-code"), Request::Join(None));
        assert_eq!(parse_text("join ab"), Request::Join(None));
        assert_eq!(parse_text("shop-code"), Request::Unknown);
        assert_eq!(parse_text(&"A".repeat(21)), Request::Unknown);
        assert_eq!(
            parse_text(&"A".repeat(20)),
            Request::BareCode(code(&"A".repeat(20)))
        );
        assert_eq!(parse_text("AB"), Request::Unknown);
        // Non-ASCII letters are not code characters.
        assert_eq!(parse_text("ÉCOLE1"), Request::Unknown);
        // A very long text is not even looked at.
        assert_eq!(parse_text(&"points ".repeat(100)), Request::Unknown);
    }

    #[test]
    fn ids_are_namespaced() {
        let uuid = Uuid::from_u128(7);
        let reward = RewardId::from_uuid(uuid);
        let cases = [
            ("menu:points".to_owned(), Request::Points),
            ("menu:rewards".to_owned(), Request::Rewards),
            ("menu:history".to_owned(), Request::History),
            ("menu:help".to_owned(), Request::Help),
            ("menu:menu".to_owned(), Request::Menu),
            ("menu:vendors".to_owned(), Request::Vendors),
            ("menu:stop".to_owned(), Request::Stop),
            ("menu:start".to_owned(), Request::Start),
            ("cancel".to_owned(), Request::No),
            (format!("reward:{uuid}"), Request::ChooseReward(reward)),
            (format!("confirm:{uuid}"), Request::ConfirmReward(reward)),
            (
                format!("vendor:{uuid}"),
                Request::ChooseVendor(TenantId::from_uuid(uuid)),
            ),
            ("rewards:page:2".to_owned(), Request::RewardsPage(2)),
            ("rewards:page:0".to_owned(), Request::Unknown),
            ("rewards:page:101".to_owned(), Request::Unknown),
            ("rewards:page:x".to_owned(), Request::Unknown),
            ("reward:not-a-uuid".to_owned(), Request::Unknown),
            ("confirm:".to_owned(), Request::Unknown),
            ("menu:unknown".to_owned(), Request::Unknown),
            // Template quick-reply payloads may be keywords, never vendor codes.
            ("POINTS".to_owned(), Request::Points),
            ("SHOPCODE123".to_owned(), Request::Unknown),
            ("JOIN SHOPCODE123".to_owned(), Request::Unknown),
        ];
        for (id, expected) in cases {
            assert_eq!(parse_id(&id), expected, "{id:?}");
        }
    }

    #[test]
    fn edit_distance() {
        let d = |a: &str, b: &str| {
            damerau_levenshtein(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("", ""), 0);
        assert_eq!(d("abc", ""), 3);
        assert_eq!(d("POINTS", "PIONTS"), 1);
        assert_eq!(d("POINTS", "POINTLESS"), 3);
        assert_eq!(d("CA", "ABC"), 3); // OSA, not unrestricted DL
        assert_eq!(d("kitten", "sitting"), 3);
    }
}
