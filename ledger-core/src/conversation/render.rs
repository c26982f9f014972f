//! Replies, as pure functions of facts. The machine renders the replies that need no
//! ledger facts itself; for `Show*`, `AskConfirmation` and `Redeem` the shell reads (or
//! writes) the facts and calls the matching function here with what it got, so the reply
//! reflects the command just executed, never a stale projection.
//!
//! Every function returns an [`OutgoingMessage`], which cannot break Meta's limits; the
//! property tests below check that anyway for arbitrary names, catalogues and pages, and
//! that every id a reply offers is one the machine understands.

use super::keywords::PAGE_MAX;
use super::message::{Button, OutgoingMessage, Row, Section, ROWS_MAX};
use super::{Broadcasts, RewardId, Routing, Vendor, VendorCode};
use crate::amounts::Points;
use crate::ids::TenantId;
use chrono::NaiveDate;

/// Rewards per page when the catalogue needs more than one list (the other two rows of
/// the ten are "previous page" and "next page").
pub const REWARDS_PER_PAGE: usize = ROWS_MAX - 2;
/// Transactions shown by HISTORY.
pub const HISTORY_LINES_MAX: usize = 10;
/// Longest name quoted inside a sentence.
const NAME_IN_TEXT_CHARS_MAX: usize = 60;

/// What POINTS shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsFacts {
    pub vendor_name: String,
    /// What the customer can spend now (the balance less open holds).
    pub balance: Points,
    /// Points inside their return window, not spendable yet.
    pub pending: Points,
    /// Points reserved for rewards waiting to be collected.
    pub held: Points,
    /// Points of lots expiring within the reminder window.
    pub expiring_within_window: Points,
    pub window_days: u32,
    /// Expiry date of the soonest-expiring open lot.
    pub soonest_expiry: Option<NaiveDate>,
    pub tier: Option<String>,
}

/// One reward of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardLine {
    pub id: RewardId,
    pub name: String,
    pub cost: Points,
    /// The catalogue's one-line description: the list row's description when given.
    pub description: Option<String>,
}

/// What REWARDS shows: the rewards on offer now (active, inside their validity window, not
/// out of stock) in display order, and the balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardsFacts {
    pub vendor_name: String,
    pub rewards: Vec<RewardLine>,
    /// 1-based; a page past the end shows the last page.
    pub page: u16,
    pub balance: Points,
}

/// What the ledger answered to a redemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedemptionOutcome {
    Redeemed {
        reward_name: String,
        /// The short unguessable code the customer shows at the counter.
        code: String,
        points: Points,
        balance: Points,
    },
    Insufficient {
        balance: Points,
        cost: Points,
    },
    /// Retired, or not this vendor's.
    RewardUnavailable,
    /// Every unit is held or handed over.
    OutOfStock,
    /// The customer already has as many as one customer may.
    LimitReached {
        limit: u32,
    },
    /// Outside the reward's validity window.
    NotValidNow,
}

/// One line of HISTORY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine {
    pub on: NaiveDate,
    /// Signed: earned positive, redeemed and expired negative.
    pub points: i64,
    pub reason: String,
}

/// `12345` as `12,345`.
fn grouped(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0 {
        out.insert(0, '-');
    }
    out
}

fn points(p: Points) -> String {
    let unit = if p.value() == 1 { "point" } else { "points" };
    format!("{} {unit}", grouped(p.value()))
}

/// A name to quote inside a sentence: one line, bounded.
fn name(raw: &str) -> String {
    let line = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= NAME_IN_TEXT_CHARS_MAX {
        return line;
    }
    let mut cut: String = line.chars().take(NAME_IN_TEXT_CHARS_MAX - 1).collect();
    cut.push('…');
    cut
}

fn date(on: NaiveDate) -> String {
    on.format("%-d %b %Y").to_string()
}

/// Counts and ids in this module are fixed and valid, so a refusal is a bug in this file;
/// the property tests exercise every renderer.
fn built(result: Result<OutgoingMessage, super::LimitError>) -> OutgoingMessage {
    result.expect("renderers build messages within Meta's counts")
}

fn button(id: &str, title: &str) -> Button {
    Button::new(id, title).expect("renderer ids are short and non-empty")
}

fn row(id: String, title: &str, description: Option<&str>) -> Row {
    Row::new(id, title, description).expect("renderer ids are short and non-empty")
}

fn section(title: &str, rows: Vec<Row>) -> Section {
    Section::new(Some(title), rows).expect("renderer sections hold 1 to 10 rows")
}

const KEYWORDS_LINE: &str = "POINTS, REWARDS, HISTORY, MENU, HELP";

pub fn render_points(facts: &PointsFacts) -> OutgoingMessage {
    let mut body = format!(
        "{}: you have {}.",
        name(&facts.vendor_name),
        points(facts.balance)
    );
    if facts.pending.is_positive() {
        body.push_str(&format!(
            "\nPending (spendable after the return window): {}.",
            points(facts.pending)
        ));
    }
    if facts.held.is_positive() {
        body.push_str(&format!(
            "\nReserved for rewards waiting to be collected: {}.",
            points(facts.held)
        ));
    }
    if let Some(tier) = &facts.tier {
        body.push_str(&format!("\nTier: {}.", name(tier)));
    }
    if facts.expiring_within_window.is_positive() {
        body.push_str(&format!(
            "\n{} expire within {} days",
            points(facts.expiring_within_window),
            facts.window_days
        ));
        match facts.soonest_expiry {
            Some(on) => body.push_str(&format!(" (the first on {}).", date(on))),
            None => body.push('.'),
        }
    } else if let Some(on) = facts.soonest_expiry {
        body.push_str(&format!("\nYour next points expire on {}.", date(on)));
    }
    built(OutgoingMessage::buttons(
        &body,
        vec![
            button("menu:rewards", "Rewards"),
            button("menu:history", "History"),
            button("menu:menu", "Menu"),
        ],
    ))
}

/// The rewards list. Up to ten rewards fit one list; more are paged
/// [`REWARDS_PER_PAGE`] at a time with "previous page"/"next page" rows.
pub fn render_rewards(facts: &RewardsFacts) -> OutgoingMessage {
    let vendor = name(&facts.vendor_name);
    if facts.rewards.is_empty() {
        return OutgoingMessage::text(&format!(
            "{vendor} has no rewards yet. You have {}.\nSend MENU for options.",
            points(facts.balance)
        ));
    }
    let total = facts.rewards.len();
    let (per_page, pages) = if total <= ROWS_MAX {
        (ROWS_MAX, 1)
    } else {
        (REWARDS_PER_PAGE, total.div_ceil(REWARDS_PER_PAGE))
    };
    // Pages are ids of at most PAGE_MAX; a catalogue beyond that shows its first pages.
    let pages = pages.min(usize::from(PAGE_MAX));
    let page = usize::from(facts.page).clamp(1, pages);
    let shown = facts
        .rewards
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page);
    let reward_rows: Vec<Row> = shown
        .map(|reward| {
            let affordability = if facts.balance >= reward.cost {
                "you can redeem this".to_owned()
            } else {
                let short = reward.cost.value().saturating_sub(facts.balance.value());
                format!("{} more needed", grouped(short))
            };
            // The vendor's description when there is one (the catalogue limits it to a
            // row description's 72 characters); otherwise the cost and affordability.
            let description = reward
                .description
                .clone()
                .unwrap_or_else(|| format!("{} · {affordability}", points(reward.cost)));
            row(
                format!("reward:{}", reward.id),
                &reward.name,
                Some(&description),
            )
        })
        .collect();
    let mut sections = vec![section("Rewards", reward_rows)];
    let mut paging = Vec::new();
    if page > 1 {
        paging.push(row(
            format!("rewards:page:{}", page - 1),
            "◀ Previous page",
            None,
        ));
    }
    if page < pages {
        paging.push(row(
            format!("rewards:page:{}", page + 1),
            "Next page ▶",
            None,
        ));
    }
    if !paging.is_empty() {
        sections.push(section(&format!("Page {page} of {pages}"), paging));
    }
    let body = format!(
        "{vendor}: you have {}. Choose a reward to redeem it.",
        points(facts.balance)
    );
    built(OutgoingMessage::list(&body, "See rewards", sections))
}

pub fn render_confirmation(reward: &RewardLine, balance: Points) -> OutgoingMessage {
    let reward_name = name(&reward.name);
    if balance < reward.cost {
        let short = reward.cost.value().saturating_sub(balance.value());
        let body = format!(
            "{reward_name} costs {}. You have {}, so you need {} more.",
            points(reward.cost),
            points(balance),
            grouped(short)
        );
        return built(OutgoingMessage::buttons(
            &body,
            vec![
                button("menu:rewards", "Other rewards"),
                button("cancel", "Cancel"),
            ],
        ));
    }
    let after = balance.checked_sub(reward.cost).unwrap_or(Points::ZERO);
    let body = format!(
        "Redeem {reward_name} for {}?\nYou have {}; {} will be left.",
        points(reward.cost),
        points(balance),
        grouped(after.value())
    );
    built(OutgoingMessage::buttons(
        &body,
        vec![
            button(&format!("confirm:{}", reward.id), "Confirm"),
            button("cancel", "Cancel"),
        ],
    ))
}

/// When the reward asked about is gone (retired, not this vendor's, unknown id).
pub fn render_reward_unavailable() -> OutgoingMessage {
    built(OutgoingMessage::buttons(
        "That reward is no longer available.",
        vec![
            button("menu:rewards", "Other rewards"),
            button("menu:menu", "Menu"),
        ],
    ))
}

/// The receipt after a purchase: points earned and the balance right after them.
pub fn render_earned(vendor_name: &str, earned: Points, balance: Points) -> OutgoingMessage {
    OutgoingMessage::text(&format!(
        "You earned {} at {}. Balance: {}.",
        points(earned),
        name(vendor_name),
        points(balance)
    ))
}

/// The confirmation of a redemption made at the counter (the vendor API): the code to show.
pub fn render_redemption_receipt(
    reward_name: &str,
    spent: Points,
    code: &str,
    balance: Points,
) -> OutgoingMessage {
    OutgoingMessage::text(&format!(
        "You redeemed {} for {}. Your code: *{}*. Balance: {}.",
        name(reward_name),
        points(spent),
        name(code),
        points(balance)
    ))
}

/// A purchase's points inside the tenant's return window: not spendable until `until`.
pub fn render_earned_pending(
    vendor_name: &str,
    earned: Points,
    until: NaiveDate,
    balance: Points,
) -> OutgoingMessage {
    OutgoingMessage::text(&format!(
        "You earned {} at {}. They can be spent from {} (return window). Balance: {}.",
        points(earned),
        name(vendor_name),
        date(until),
        points(balance)
    ))
}

/// A reward hold that ended without the hand-over: the points are available again.
pub fn render_hold_released(
    reward_name: &str,
    returned: Points,
    expired: bool,
    balance: Points,
) -> OutgoingMessage {
    let why = if expired {
        "was not collected in time"
    } else {
        "was cancelled by the shop"
    };
    OutgoingMessage::text(&format!(
        "Your reward {} {why}: {} are available again. Balance: {}.",
        name(reward_name),
        points(returned),
        points(balance)
    ))
}

/// The customer's tier changed: up at once after a purchase, down at a review.
pub fn render_tier_changed(vendor_name: &str, tier_name: &str, upgrade: bool) -> OutgoingMessage {
    let text = if upgrade {
        format!(
            "Congratulations! You are now {} at {}.",
            name(tier_name),
            name(vendor_name)
        )
    } else {
        format!(
            "Your tier at {} is now {}. Keep shopping to move up again.",
            name(vendor_name),
            name(tier_name)
        )
    };
    OutgoingMessage::text(&text)
}

/// A redemption handed over at the counter.
pub fn render_fulfilled(reward_name: &str) -> OutgoingMessage {
    OutgoingMessage::text(&format!(
        "Your reward {} was handed over. Enjoy!",
        name(reward_name)
    ))
}

/// One lot's reminder, sent once, some days before it expires.
pub fn render_expiry_reminder(
    remaining: Points,
    vendor_name: &str,
    expires_on: NaiveDate,
) -> OutgoingMessage {
    OutgoingMessage::text(&format!(
        "{} at {} expire on {}. Send POINTS to see your balance.",
        points(remaining),
        name(vendor_name),
        date(expires_on)
    ))
}

pub fn render_redeemed(outcome: &RedemptionOutcome) -> OutgoingMessage {
    match outcome {
        RedemptionOutcome::Redeemed {
            reward_name,
            code,
            points: spent,
            balance,
        } => OutgoingMessage::text(&format!(
            "Done! {} redeemed for {}.\nYour code: *{}*\nShow this code at the counter. \
             You have {} left.",
            name(reward_name),
            points(*spent),
            name(code),
            points(*balance)
        )),
        RedemptionOutcome::Insufficient { balance, cost } => OutgoingMessage::text(&format!(
            "Not redeemed: it costs {} and you have {}. Nothing was deducted.\n\
             Send REWARDS to see what you can redeem.",
            points(*cost),
            points(*balance)
        )),
        RedemptionOutcome::RewardUnavailable => OutgoingMessage::text(
            "Not redeemed: that reward is no longer available. Nothing was deducted.\n\
             Send REWARDS to see the current rewards.",
        ),
        RedemptionOutcome::OutOfStock => OutgoingMessage::text(
            "Not redeemed: that reward is out of stock. Nothing was deducted.\n\
             Send REWARDS to see the rewards you can redeem now.",
        ),
        RedemptionOutcome::LimitReached { limit } => OutgoingMessage::text(&format!(
            "Not redeemed: each customer can have {limit} of that reward, and you already \
             have {limit}. Nothing was deducted.\nSend REWARDS to see other rewards."
        )),
        RedemptionOutcome::NotValidNow => OutgoingMessage::text(
            "Not redeemed: that reward is not on offer right now. Nothing was deducted.\n\
             Send REWARDS to see the rewards you can redeem now.",
        ),
    }
}

pub fn render_history(vendor_name: &str, lines: &[HistoryLine]) -> OutgoingMessage {
    let vendor = name(vendor_name);
    if lines.is_empty() {
        return OutgoingMessage::text(&format!(
            "{vendor}: no transactions yet.\nSend MENU for options."
        ));
    }
    let mut body = format!("{vendor}: your last transactions\n");
    for line in lines.iter().take(HISTORY_LINES_MAX) {
        let sign = if line.points > 0 { "+" } else { "" };
        body.push_str(&format!(
            "\n{}  {sign}{}  {}",
            date(line.on),
            grouped(line.points),
            name(&line.reason)
        ));
    }
    OutgoingMessage::text(&body)
}

pub fn render_help(vendor: &Vendor, routing: &Routing) -> OutgoingMessage {
    let mut body = format!(
        "You are chatting with {}. Send one word:\n\
         POINTS - your balance and expiry\n\
         REWARDS - rewards you can redeem\n\
         HISTORY - your last transactions\n\
         MENU - the menu\n\
         STOP / START - offers and announcements off / on",
        name(&vendor.name)
    );
    if *routing == Routing::SharedNumber {
        body.push_str(
            "\nVENDORS - switch vendor\n\
             JOIN <code> - join another vendor",
        );
    }
    OutgoingMessage::text(&body)
}

/// The menu, as a list so it has room for every option.
pub fn render_menu(vendor: &Vendor, broadcasts: Broadcasts, can_switch: bool) -> OutgoingMessage {
    let mut rows = vec![
        row(
            "menu:points".into(),
            "Points",
            Some("Your balance and expiry"),
        ),
        row(
            "menu:rewards".into(),
            "Rewards",
            Some("Rewards you can redeem"),
        ),
        row(
            "menu:history".into(),
            "History",
            Some("Your last transactions"),
        ),
        row("menu:help".into(), "Help", Some("What you can send")),
    ];
    rows.push(match broadcasts {
        Broadcasts::OptedIn => row(
            "menu:stop".into(),
            "Stop offers",
            Some("No more offers and announcements"),
        ),
        Broadcasts::OptedOut => row(
            "menu:start".into(),
            "Get offers",
            Some("Receive offers and announcements"),
        ),
    });
    if can_switch {
        rows.push(row(
            "menu:vendors".into(),
            "Switch vendor",
            Some("Talk to another vendor you joined"),
        ));
    }
    built(OutgoingMessage::list(
        &format!("{}: what would you like to do?", name(&vendor.name)),
        "Menu",
        vec![section("Menu", rows)],
    ))
}

pub fn render_joined(vendor: &Vendor) -> OutgoingMessage {
    built(OutgoingMessage::buttons(
        &format!(
            "Welcome to {}'s loyalty programme! You earn points with every purchase.\n\
             We'll also send you offers and announcements here; reply STOP at any time \
             to turn them off.",
            name(&vendor.name)
        ),
        vec![
            button("menu:points", "My points"),
            button("menu:rewards", "Rewards"),
            button("menu:menu", "Menu"),
        ],
    ))
}

pub fn render_switched(vendor: &Vendor) -> OutgoingMessage {
    built(OutgoingMessage::buttons(
        &format!("You are now chatting with {}.", name(&vendor.name)),
        vec![
            button("menu:points", "My points"),
            button("menu:rewards", "Rewards"),
            button("menu:menu", "Menu"),
        ],
    ))
}

/// The vendors joined on the shared number, to switch between.
pub fn render_vendors(vendors: &[Vendor], current: TenantId) -> OutgoingMessage {
    // A state never holds a vendor twice, but a row id must be unique: keep the first.
    let mut unique: Vec<&Vendor> = Vec::new();
    for vendor in vendors {
        if !unique.iter().any(|u| u.tenant == vendor.tenant) {
            unique.push(vendor);
        }
    }
    let rows: Vec<Row> = unique
        .into_iter()
        .take(ROWS_MAX)
        .map(|v| {
            let note = (v.tenant == current).then_some("Current");
            row(format!("vendor:{}", v.tenant), &v.name, note)
        })
        .collect();
    if rows.is_empty() {
        return render_need_vendor();
    }
    built(OutgoingMessage::list(
        "Which vendor would you like to chat with? To join another, send its code.",
        "Vendors",
        vec![section("Your vendors", rows)],
    ))
}

pub fn render_unknown(vendor: &Vendor, routing: &Routing) -> OutgoingMessage {
    let help = render_help(vendor, routing);
    OutgoingMessage::text(&format!(
        "Sorry, I didn't understand that.\n{}",
        help.body()
    ))
}

/// For images, voice notes, locations and the like.
pub fn render_unsupported(vendor: Option<&Vendor>, routing: &Routing) -> OutgoingMessage {
    let rest = match vendor {
        Some(vendor) => render_help(vendor, routing).body().to_owned(),
        None => render_need_vendor().body().to_owned(),
    };
    OutgoingMessage::text(&format!("I can only read text and button taps.\n{rest}"))
}

/// A customer on the shared number who has not joined a vendor yet.
pub fn render_need_vendor() -> OutgoingMessage {
    OutgoingMessage::text(
        "Welcome! To start, send the code of the shop you want to join, for example \
         JOIN SHOPCODE123. You'll find the code at the counter.",
    )
}

pub fn render_join_instructions() -> OutgoingMessage {
    OutgoingMessage::text(
        "To join a shop, send JOIN followed by its code, for example JOIN SHOPCODE123. \
         Codes are 3 to 20 letters or digits.",
    )
}

pub fn render_unknown_vendor(code: &VendorCode, current: Option<&Vendor>) -> OutgoingMessage {
    let next = match current {
        Some(vendor) => format!(
            "You are still chatting with {}. Send HELP for what you can do.",
            name(&vendor.name)
        ),
        None => "Please check the code at the counter and send it again.".to_owned(),
    };
    OutgoingMessage::text(&format!(
        "\"{}\" is not a command or a shop code I know.\n{next}",
        code.as_str()
    ))
}

pub fn render_too_many_vendors(wanted: &Vendor, joined: &[Vendor]) -> OutgoingMessage {
    OutgoingMessage::text(&format!(
        "You can join at most {} shops on this number and have joined {}, so you \
         did not join {}.",
        super::VENDORS_MAX,
        joined.len(),
        name(&wanted.name)
    ))
}

pub fn render_nothing_pending(vendor: &Vendor) -> OutgoingMessage {
    render_menu_with_note(vendor, "There is nothing waiting for your answer.")
}

pub fn render_cancelled(vendor: &Vendor) -> OutgoingMessage {
    render_menu_with_note(vendor, "Cancelled: nothing was redeemed.")
}

fn render_menu_with_note(vendor: &Vendor, note: &str) -> OutgoingMessage {
    built(OutgoingMessage::buttons(
        &format!("{note}\n{}: {KEYWORDS_LINE}.", name(&vendor.name)),
        vec![
            button("menu:points", "My points"),
            button("menu:rewards", "Rewards"),
            button("menu:menu", "Menu"),
        ],
    ))
}

pub fn render_opted_out() -> OutgoingMessage {
    OutgoingMessage::text(
        "You will no longer receive offers and announcements on this number. You can still \
         ask for your POINTS, REWARDS and HISTORY at any time. Send START to receive offers \
         again.",
    )
}

pub fn render_opted_in() -> OutgoingMessage {
    OutgoingMessage::text(
        "You will receive offers and announcements on this number again. Send STOP at any \
         time to turn them off.",
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn ledger_notifications_say_points_vendor_balance_code_and_date() {
        let text = |m: OutgoingMessage| m.body().to_owned();
        let earned = text(render_earned(
            "Mama Put",
            Points::new(12),
            Points::new(1_012),
        ));
        assert!(
            earned.contains("You earned 12 points at Mama Put. Balance: 1,012 points."),
            "{earned}"
        );
        let redeemed = text(render_redemption_receipt(
            "Free jollof",
            Points::new(50),
            "7K3M9QXA",
            Points::new(1),
        ));
        assert!(
            redeemed.contains(
                "You redeemed Free jollof for 50 points. Your code: *7K3M9QXA*. Balance: 1 point."
            ),
            "{redeemed}"
        );
        assert!(text(render_fulfilled("Free jollof"))
            .contains("Your reward Free jollof was handed over. Enjoy!"));
        let on = NaiveDate::from_ymd_opt(2026, 3, 4).unwrap();
        let reminder = text(render_expiry_reminder(Points::new(30), "Mama Put", on));
        assert!(
            reminder.contains(
                "30 points at Mama Put expire on 4 Mar 2026. Send POINTS to see your balance."
            ),
            "{reminder}"
        );
    }

    use super::super::keywords::{parse_id, Request};
    use super::super::message::{
        limit_len, BUTTONS_MAX, BUTTON_ID_MAX, BUTTON_TITLE_MAX, INTERACTIVE_BODY_MAX,
        LIST_BUTTON_MAX, ROW_DESCRIPTION_MAX, ROW_ID_MAX, ROW_TITLE_MAX, SECTIONS_MAX,
        SECTION_TITLE_MAX, TEXT_BODY_MAX,
    };
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    /// An independent check of every limit, so the test does not trust the constructors.
    fn assert_within_limits(message: &OutgoingMessage) {
        let nonempty_within = |text: &str, max: usize, what: &str| {
            assert!(!text.is_empty(), "{what} is empty");
            assert!(limit_len(text) <= max, "{what} too long: {text:?}");
        };
        match message {
            OutgoingMessage::Text(m) => nonempty_within(m.body(), TEXT_BODY_MAX, "text body"),
            OutgoingMessage::Buttons(m) => {
                nonempty_within(m.body(), INTERACTIVE_BODY_MAX, "buttons body");
                assert!((1..=BUTTONS_MAX).contains(&m.buttons().len()));
                for (i, b) in m.buttons().iter().enumerate() {
                    nonempty_within(b.title(), BUTTON_TITLE_MAX, "button title");
                    nonempty_within(b.id(), BUTTON_ID_MAX, "button id");
                    assert!(m.buttons()[..i].iter().all(|e| e.title() != b.title()));
                }
            }
            OutgoingMessage::List(m) => {
                nonempty_within(m.body(), INTERACTIVE_BODY_MAX, "list body");
                nonempty_within(m.button(), LIST_BUTTON_MAX, "list button");
                assert!((1..=SECTIONS_MAX).contains(&m.sections().len()));
                let rows: Vec<_> = m.sections().iter().flat_map(|s| s.rows()).collect();
                assert!((1..=ROWS_MAX).contains(&rows.len()), "{} rows", rows.len());
                for s in m.sections() {
                    if let Some(t) = s.title() {
                        nonempty_within(t, SECTION_TITLE_MAX, "section title");
                    }
                }
                for r in rows {
                    nonempty_within(r.title(), ROW_TITLE_MAX, "row title");
                    nonempty_within(r.id(), ROW_ID_MAX, "row id");
                    if let Some(d) = r.description() {
                        nonempty_within(d, ROW_DESCRIPTION_MAX, "row description");
                    }
                }
            }
        }
        for id in message.reply_ids() {
            assert_ne!(parse_id(id), Request::Unknown, "dead id {id:?}");
        }
    }

    fn reward(i: u128, name: &str, cost: i64) -> RewardLine {
        RewardLine {
            id: RewardId::from_uuid(Uuid::from_u128(i)),
            name: name.to_owned(),
            cost: Points::new(cost),
            description: None,
        }
    }

    #[test]
    fn a_reward_with_a_description_shows_it_as_its_row_description() {
        let mut described = reward(1, "Jollof", 100);
        described.description = Some("Party jollof with chicken".into());
        let facts = RewardsFacts {
            vendor_name: "Mama Put".into(),
            rewards: vec![described, reward(2, "Suya", 500)],
            page: 1,
            balance: Points::new(150),
        };
        let json = format!("{:?}", render_rewards(&facts));
        assert!(json.contains("Party jollof with chicken"), "{json}");
        assert!(json.contains("500 points · 350 more needed"), "{json}");
    }

    #[test]
    fn catalogue_refusals_say_why_and_that_nothing_was_deducted() {
        for (outcome, why) in [
            (RedemptionOutcome::OutOfStock, "out of stock"),
            (RedemptionOutcome::LimitReached { limit: 2 }, "can have 2"),
            (RedemptionOutcome::NotValidNow, "not on offer right now"),
        ] {
            let text = format!("{:?}", render_redeemed(&outcome));
            assert!(text.contains(why), "{text}");
            assert!(text.contains("Nothing was deducted"), "{text}");
        }
    }

    fn vendor(name: &str) -> Vendor {
        Vendor::new(TenantId::from_uuid(Uuid::from_u128(1)), name)
    }

    fn rewards_facts(n: usize, page: u16) -> RewardsFacts {
        RewardsFacts {
            vendor_name: "Mama Put".into(),
            rewards: (0..n)
                .map(|i| reward(i as u128 + 1, &format!("R{i}"), 100))
                .collect(),
            page,
            balance: Points::new(150),
        }
    }

    fn ids(message: &OutgoingMessage) -> Vec<String> {
        message.reply_ids().into_iter().map(str::to_owned).collect()
    }

    fn reward_id(i: u128) -> String {
        format!("reward:{}", Uuid::from_u128(i))
    }

    #[test]
    fn up_to_ten_rewards_fit_one_list_without_paging() {
        let message = render_rewards(&rewards_facts(10, 1));
        let expected: Vec<String> = (1..=10).map(reward_id).collect();
        assert_eq!(ids(&message), expected);
        // A page past the end of a one-page catalogue is that page.
        assert_eq!(ids(&render_rewards(&rewards_facts(10, 7))), expected);
    }

    #[test]
    fn more_than_ten_rewards_are_paged_eight_at_a_time() {
        // 20 rewards: pages of 8, 8, 4.
        let first = ids(&render_rewards(&rewards_facts(20, 1)));
        let mut expected: Vec<String> = (1..=8).map(reward_id).collect();
        expected.push("rewards:page:2".into());
        assert_eq!(first, expected);

        let middle = ids(&render_rewards(&rewards_facts(20, 2)));
        let mut expected: Vec<String> = (9..=16).map(reward_id).collect();
        expected.extend(["rewards:page:1".into(), "rewards:page:3".into()]);
        assert_eq!(middle, expected);

        let last = ids(&render_rewards(&rewards_facts(20, 3)));
        let mut expected: Vec<String> = (17..=20).map(reward_id).collect();
        expected.push("rewards:page:2".into());
        assert_eq!(last, expected);

        // Past the end: the last page. Page 0 (never sent): the first.
        assert_eq!(ids(&render_rewards(&rewards_facts(20, 9))), last);
        assert_eq!(ids(&render_rewards(&rewards_facts(20, 0))), first);
    }

    #[test]
    fn rewards_show_what_is_affordable() {
        let facts = RewardsFacts {
            vendor_name: "Shop".into(),
            rewards: vec![reward(1, "Coffee", 100), reward(2, "Cake", 1_200)],
            page: 1,
            balance: Points::new(150),
        };
        let OutgoingMessage::List(list) = render_rewards(&facts) else {
            panic!("a list")
        };
        let rows = list.sections()[0].rows();
        assert_eq!(
            rows[0].description(),
            Some("100 points · you can redeem this")
        );
        assert_eq!(
            rows[1].description(),
            Some("1,200 points · 1,050 more needed")
        );
        assert!(list.body().contains("150 points"));
    }

    #[test]
    fn an_empty_catalogue_is_said_so() {
        let message = render_rewards(&rewards_facts(0, 1));
        assert!(message.body().contains("no rewards yet"), "{message:?}");
    }

    #[test]
    fn confirmation_offers_confirm_only_when_affordable() {
        let coffee = reward(5, "Coffee", 100);
        let yes = render_confirmation(&coffee, Points::new(150));
        assert_eq!(
            ids(&yes),
            vec![format!("confirm:{}", Uuid::from_u128(5)), "cancel".into()]
        );
        assert!(yes.body().contains("50 will be left"), "{yes:?}");
        let no = render_confirmation(&coffee, Points::new(40));
        assert_eq!(ids(&no), vec!["menu:rewards".to_owned(), "cancel".into()]);
        assert!(no.body().contains("need 60 more"), "{no:?}");
    }

    #[test]
    fn redeemed_reply_carries_the_code_and_new_balance() {
        let message = render_redeemed(&RedemptionOutcome::Redeemed {
            reward_name: "Coffee".into(),
            code: "K7Q-4MZ9".into(),
            points: Points::new(100),
            balance: Points::new(50),
        });
        assert!(message.body().contains("*K7Q-4MZ9*"));
        assert!(message.body().contains("50 points left"));
        let refused = render_redeemed(&RedemptionOutcome::Insufficient {
            balance: Points::new(40),
            cost: Points::new(100),
        });
        assert!(refused.body().contains("Nothing was deducted"));
        let gone = render_redeemed(&RedemptionOutcome::RewardUnavailable);
        assert!(gone.body().contains("no longer available"));
    }

    #[test]
    fn points_reply_tells_balance_expiry_and_tier() {
        let on = NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
        let message = render_points(&PointsFacts {
            vendor_name: "Shop".into(),
            balance: Points::new(12_345),
            pending: Points::ZERO,
            held: Points::ZERO,
            expiring_within_window: Points::new(200),
            window_days: 14,
            soonest_expiry: Some(on),
            tier: Some("Gold".into()),
        });
        assert_eq!(
            message.body(),
            "Shop: you have 12,345 points.\nTier: Gold.\n\
             200 points expire within 14 days (the first on 7 Mar 2026)."
        );
        let nothing_soon = render_points(&PointsFacts {
            vendor_name: "Shop".into(),
            balance: Points::new(1),
            pending: Points::ZERO,
            held: Points::ZERO,
            expiring_within_window: Points::ZERO,
            window_days: 14,
            soonest_expiry: Some(on),
            tier: None,
        });
        assert_eq!(
            nothing_soon.body(),
            "Shop: you have 1 point.\nYour next points expire on 7 Mar 2026."
        );
    }

    #[test]
    fn history_lists_the_last_lines_with_signs() {
        let on = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        let lines: Vec<HistoryLine> = (0..15)
            .map(|i| HistoryLine {
                on,
                points: if i % 2 == 0 { 150 } else { -100 },
                reason: format!("line {i}"),
            })
            .collect();
        let body = render_history("Shop", &lines).body().to_owned();
        assert!(body.contains("2 Jan 2026  +150  line 0"), "{body}");
        assert!(body.contains("2 Jan 2026  -100  line 1"), "{body}");
        assert!(
            body.contains("line 9") && !body.contains("line 10"),
            "{body}"
        );
        assert!(render_history("Shop", &[])
            .body()
            .contains("no transactions"));
    }

    #[test]
    fn menu_offers_stop_or_start_and_switch_only_when_useful() {
        let v = vendor("Shop");
        let menu = |b, s| ids(&render_menu(&v, b, s));
        assert!(menu(Broadcasts::OptedIn, false).contains(&"menu:stop".to_owned()));
        assert!(menu(Broadcasts::OptedOut, false).contains(&"menu:start".to_owned()));
        assert!(!menu(Broadcasts::OptedIn, false).contains(&"menu:vendors".to_owned()));
        assert!(menu(Broadcasts::OptedIn, true).contains(&"menu:vendors".to_owned()));
    }

    #[test]
    fn grouping_of_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(-1_234_567), "-1,234,567");
        assert_eq!(grouped(i64::MIN), "-9,223,372,036,854,775,808");
    }

    #[test]
    fn huge_names_and_catalogues_stay_within_limits() {
        let huge = "Ñ😀 ".repeat(5_000);
        let v = vendor(&huge);
        let facts = RewardsFacts {
            vendor_name: huge.clone(),
            rewards: (0..900).map(|i| reward(i, &huge, 5)).collect(),
            page: 200,
            balance: Points::new(i64::MAX),
        };
        let last = render_rewards(&facts);
        assert_within_limits(&last);
        // Pages stop at PAGE_MAX, so every id stays one the machine accepts.
        assert!(ids(&last).contains(&format!("rewards:page:{}", PAGE_MAX - 1)));
        let lines: Vec<HistoryLine> = (0..100)
            .map(|_| HistoryLine {
                on: NaiveDate::MAX,
                points: i64::MIN,
                reason: huge.clone(),
            })
            .collect();
        for message in [
            render_history(&huge, &lines),
            render_help(&v, &Routing::SharedNumber),
            render_unknown(&v, &Routing::SharedNumber),
            render_menu(&v, Broadcasts::OptedIn, true),
            render_confirmation(&reward(1, &huge, i64::MAX), Points::new(i64::MIN)),
            render_vendors(&vec![v.clone(); 30], v.tenant),
        ] {
            assert_within_limits(&message);
        }
    }

    fn any_name() -> impl Strategy<Value = String> {
        prop_oneof![".{0,120}", "[a-zA-Z ]{0,40}", "(😀|👨‍👩‍👧|é|\n| |x){0,80}",]
    }

    fn any_points() -> impl Strategy<Value = Points> {
        prop_oneof![0i64..10_000, Just(i64::MAX), Just(i64::MIN)].prop_map(Points::new)
    }

    fn any_rewards() -> impl Strategy<Value = Vec<RewardLine>> {
        prop::collection::vec(
            (any_name(), any_points(), prop::option::of(any_name())),
            0..40,
        )
        .prop_map(|lines| {
            lines
                .into_iter()
                .enumerate()
                .map(|(i, (name, cost, description))| RewardLine {
                    id: RewardId::from_uuid(Uuid::from_u128(i as u128)),
                    name,
                    cost,
                    description,
                })
                .collect()
        })
    }

    fn any_vendor() -> impl Strategy<Value = Vendor> {
        (0u128..6, any_name()).prop_map(|(id, n)| vendor_with(id, &n))
    }

    fn vendor_with(id: u128, name: &str) -> Vendor {
        Vendor::new(TenantId::from_uuid(Uuid::from_u128(id)), name)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn every_renderer_stays_within_meta_limits(
            vendor in any_vendor(),
            names in prop::collection::vec(any_name(), 1..4),
            rewards in any_rewards(),
            page in 0u16..=PAGE_MAX + 3,
            balance in any_points(),
            expiring in any_points(),
            window_days in any::<u32>(),
            days in 0i32..3_000_000,
            lines in prop::collection::vec((any_name(), any::<i64>()), 0..30),
            vendors in prop::collection::vec(any_vendor(), 0..14),
            code in "[A-Z0-9]{3,20}",
        ) {
            let on = NaiveDate::from_num_days_from_ce_opt(days).unwrap();
            let first = names[0].clone();
            let reward_line = RewardLine { id: RewardId::from_uuid(Uuid::nil()), name: first.clone(), cost: balance, description: Some(first.clone()) };
            let history: Vec<HistoryLine> = lines.into_iter().map(|(reason, points)| HistoryLine { on, points, reason }).collect();
            let code = VendorCode::parse(&code).unwrap();
            let mut outputs = vec![
                render_points(&PointsFacts { vendor_name: first.clone(), balance, pending: Points::ZERO, held: Points::ZERO, expiring_within_window: expiring, window_days, soonest_expiry: Some(on), tier: Some(first.clone()) }),
                render_rewards(&RewardsFacts { vendor_name: first.clone(), rewards, page, balance }),
                render_confirmation(&reward_line, balance),
                render_confirmation(&reward_line, expiring),
                render_reward_unavailable(),
                render_redeemed(&RedemptionOutcome::Redeemed { reward_name: first.clone(), code: names.last().unwrap().clone(), points: balance, balance: expiring }),
                render_redeemed(&RedemptionOutcome::Insufficient { balance, cost: expiring }),
                render_redeemed(&RedemptionOutcome::RewardUnavailable),
                render_redeemed(&RedemptionOutcome::OutOfStock),
                render_redeemed(&RedemptionOutcome::LimitReached { limit: window_days }),
                render_redeemed(&RedemptionOutcome::NotValidNow),
                render_history(&first, &history),
                render_joined(&vendor),
                render_switched(&vendor),
                render_too_many_vendors(&vendor, &vendors),
                render_nothing_pending(&vendor),
                render_cancelled(&vendor),
                render_need_vendor(),
                render_join_instructions(),
                render_unknown_vendor(&code, Some(&vendor)),
                render_unknown_vendor(&code, None),
                render_opted_out(),
                render_opted_in(),
                render_unsupported(None, &Routing::SharedNumber),
                render_vendors(&vendors, vendor.tenant),
            ];
            for routing in [Routing::SharedNumber, Routing::OwnNumber { vendor: vendor.clone() }] {
                outputs.push(render_help(&vendor, &routing));
                outputs.push(render_unknown(&vendor, &routing));
                outputs.push(render_unsupported(Some(&vendor), &routing));
            }
            for broadcasts in [Broadcasts::OptedIn, Broadcasts::OptedOut] {
                for can_switch in [false, true] {
                    outputs.push(render_menu(&vendor, broadcasts, can_switch));
                }
            }
            for message in &outputs {
                assert_within_limits(message);
            }
        }

        #[test]
        fn paging_shows_every_reward_exactly_once(count in 0usize..200) {
            let mut seen = Vec::new();
            let pages = if count <= ROWS_MAX { 1 } else { count.div_ceil(REWARDS_PER_PAGE) };
            for page in 1..=pages {
                let message = render_rewards(&rewards_facts(count, page as u16));
                assert_within_limits(&message);
                let page_ids = ids(&message);
                let next = format!("rewards:page:{}", page + 1);
                assert_eq!(page_ids.contains(&next), page < pages, "page {page} of {pages}");
                seen.extend(page_ids.into_iter().filter(|id| id.starts_with("reward:")));
            }
            let expected: Vec<String> = (1..=count as u128).map(reward_id).collect();
            prop_assert_eq!(seen, expected);
        }
    }
}
