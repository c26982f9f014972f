//! The rules engine's tests: one table line per scenario (name, rules, facts, expected
//! total, and for some the breakdown), validation, and a property test.

use super::*;
use chrono::{NaiveDate, NaiveTime, TimeZone};
use proptest::prelude::*;

// --- Building rules -------------------------------------------------------------------

fn pa(id: &str, step: i64, points: i64, minimum: i64) -> Rule {
    Rule::new(
        id,
        RuleKind::PerAmountSpent {
            amount_step: MinorUnits::new(step),
            points_per_step: Points::new(points),
            minimum_purchase: MinorUnits::new(minimum),
        },
    )
}

/// 1 point per 100 spent, no minimum: the base most scenarios use.
fn base() -> Rule {
    pa("base", 100, 1, 0)
}

fn flat(id: &str, points: i64) -> Rule {
    Rule::new(
        id,
        RuleKind::PerPurchase {
            points: Points::new(points),
        },
    )
}

fn milestone(id: &str, n: u32, bonus: i64) -> Rule {
    Rule::new(
        id,
        RuleKind::Milestone {
            every_nth_purchase: n,
            bonus: Points::new(bonus),
        },
    )
}

fn first(id: &str, bonus: i64) -> Rule {
    Rule::new(
        id,
        RuleKind::FirstPurchase {
            bonus: Points::new(bonus),
        },
    )
}

fn birthday(id: &str, bonus: i64) -> Rule {
    Rule::new(
        id,
        RuleKind::Birthday {
            bonus: Points::new(bonus),
        },
    )
}

fn referral(id: &str, referee: i64, referrer: i64) -> Rule {
    Rule::new(
        id,
        RuleKind::Referral {
            referee_bonus: Points::new(referee),
            referrer_bonus: Points::new(referrer),
        },
    )
}

fn items(id: &str, skus: &[&str], categories: &[&str], percent: u32) -> Rule {
    Rule::new(
        id,
        RuleKind::ItemMultiplier {
            item_match: ItemMatch {
                skus: skus.iter().map(|s| s.to_string()).collect(),
                categories: categories.iter().map(|s| s.to_string()).collect(),
            },
            percent,
        },
    )
}

fn promo(id: &str, percent: u32) -> Rule {
    Rule::new(
        id,
        RuleKind::Promotion {
            percent,
            applies_to: AppliesTo::AllBaseRules,
        },
    )
}

fn promo_on(id: &str, percent: u32, ids: &[&str]) -> Rule {
    Rule::new(
        id,
        RuleKind::Promotion {
            percent,
            applies_to: AppliesTo::Rules(ids.iter().map(|s| s.to_string()).collect()),
        },
    )
}

fn tier(id: &str, name: &str, percent: u32) -> Rule {
    Rule::new(
        id,
        RuleKind::TierMultiplier {
            tier: name.into(),
            percent,
        },
    )
}

fn purchase_cap(id: &str, max: i64) -> Rule {
    Rule::new(
        id,
        RuleKind::PurchaseCap {
            max: Points::new(max),
        },
    )
}

fn daily_cap(id: &str, max: i64) -> Rule {
    Rule::new(
        id,
        RuleKind::DailyCap {
            max: Points::new(max),
        },
    )
}

trait RuleExt {
    fn priority(self, priority: u16) -> Rule;
    fn exclusive(self, group: &str) -> Rule;
    fn when(self, window: Window) -> Rule;
}

impl RuleExt for Rule {
    fn priority(self, priority: u16) -> Rule {
        Rule { priority, ..self }
    }
    fn exclusive(self, group: &str) -> Rule {
        Rule {
            stacking: Stacking::Exclusive {
                group: group.into(),
            },
            ..self
        }
    }
    fn when(self, window: Window) -> Rule {
        Rule {
            when: Some(window),
            ..self
        }
    }
}

fn weekend() -> Window {
    Window {
        weekdays: Some(vec![Weekday::Sat, Weekday::Sun]),
        ..Window::default()
    }
}

fn hours(start: u8, end: u8) -> Window {
    Window {
        hours: Some(Hours { start, end }),
        ..Window::default()
    }
}

fn december_1_to_24() -> Window {
    Window {
        from: NaiveDate::from_ymd_opt(2026, 12, 1),
        to: NaiveDate::from_ymd_opt(2026, 12, 24),
        ..Window::default()
    }
}

// --- Building facts -------------------------------------------------------------------

/// Owned facts, so a table line can hold its line items.
#[derive(Debug, Clone)]
struct Facts {
    amount: i64,
    number: u32,
    local: NaiveDateTime,
    lines: Vec<LineItem>,
    tier: Option<&'static str>,
    earned_today: i64,
    birthday_today: bool,
    birthday_given: bool,
    referred: bool,
}

/// Local date-time, in the tenant's zone. 2026-12-02 is a Wednesday, 12-04 a Friday.
fn local(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_time(NaiveTime::from_hms_opt(h, min, s).unwrap())
}

fn wednesday_noon() -> NaiveDateTime {
    local(2026, 12, 2, 12, 0, 0)
}

/// A purchase of `amount`, the customer's 2nd, Wednesday noon, nothing else known.
fn spend(amount: i64) -> Facts {
    Facts {
        amount,
        number: 2,
        local: wednesday_noon(),
        lines: Vec::new(),
        tier: None,
        earned_today: 0,
        birthday_today: false,
        birthday_given: false,
        referred: false,
    }
}

fn line(sku: &str, category: Option<&str>, quantity: u32, unit_price: i64) -> LineItem {
    LineItem {
        sku: sku.into(),
        category: category.map(Into::into),
        quantity,
        unit_price: MinorUnits::new(unit_price),
    }
}

impl Facts {
    fn number(self, number: u32) -> Self {
        Facts { number, ..self }
    }
    fn at(self, local: NaiveDateTime) -> Self {
        Facts { local, ..self }
    }
    /// At a UTC instant, converted with the default (Lagos) zone as `decide` does.
    fn at_utc(self, y: i32, m: u32, d: u32, h: u32, min: u32) -> Self {
        let utc = Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap();
        self.at(local_time(DEFAULT_TIME_ZONE, utc))
    }
    fn lines(self, lines: Vec<LineItem>) -> Self {
        let amount = lines
            .iter()
            .map(|l| l.unit_price.value() * i64::from(l.quantity))
            .sum();
        Facts {
            amount,
            lines,
            ..self
        }
    }
    fn tier(self, tier: &'static str) -> Self {
        Facts {
            tier: Some(tier),
            ..self
        }
    }
    fn earned_today(self, earned_today: i64) -> Self {
        Facts {
            earned_today,
            ..self
        }
    }
    fn birthday(self, given_this_year: bool) -> Self {
        Facts {
            birthday_today: true,
            birthday_given: given_this_year,
            ..self
        }
    }
    fn referred(self) -> Self {
        Facts {
            referred: true,
            ..self
        }
    }
    fn borrow(&self) -> PurchaseFacts<'_> {
        PurchaseFacts {
            amount: MinorUnits::new(self.amount),
            purchase_number: self.number,
            local_time: self.local,
            line_items: &self.lines,
            tier: self.tier,
            earned_today: Points::new(self.earned_today),
            birthday_today: self.birthday_today,
            birthday_bonus_this_year: self.birthday_given,
            referred: self.referred,
        }
    }
}

// --- The table ------------------------------------------------------------------------

type Breakdown = Option<Vec<(&'static str, i64)>>;

/// One line per scenario: name, rules, facts, expected total, expected breakdown (ids and
/// points) where it says something the total does not.
fn scenarios() -> Vec<(&'static str, Vec<Rule>, Facts, i64, Breakdown)> {
    let sat_midnight = local(2026, 12, 5, 0, 0, 0);
    let fri_last_second = local(2026, 12, 4, 23, 59, 59);
    vec![
        ("no rules earn nothing", vec![], spend(50_000), 0, None),
        (
            "whole steps only",
            vec![pa("r", 10_000, 1, 0)],
            spend(25_999),
            2,
            None,
        ),
        (
            "exactly one step",
            vec![pa("r", 10_000, 1, 0)],
            spend(10_000),
            1,
            None,
        ),
        (
            "one below a step",
            vec![pa("r", 10_000, 1, 0)],
            spend(9_999),
            0,
            None,
        ),
        (
            "step and points per step",
            vec![pa("r", 500, 3, 0)],
            spend(2_000),
            12,
            None,
        ),
        (
            "exact minimum earns",
            vec![pa("r", 100, 1, 5_000)],
            spend(5_000),
            50,
            None,
        ),
        (
            "one below the minimum",
            vec![pa("r", 100, 1, 5_000)],
            spend(4_999),
            0,
            None,
        ),
        (
            "per purchase is flat",
            vec![flat("f", 10)],
            spend(1),
            10,
            None,
        ),
        (
            "milestone on the 5th",
            vec![milestone("m", 5, 100)],
            spend(1).number(5),
            100,
            None,
        ),
        (
            "milestone not on the 4th",
            vec![milestone("m", 5, 100)],
            spend(1).number(4),
            0,
            None,
        ),
        (
            "milestone on the 10th",
            vec![milestone("m", 5, 100)],
            spend(1).number(10),
            100,
            None,
        ),
        (
            "first purchase bonus",
            vec![first("w", 50)],
            spend(1).number(1),
            50,
            None,
        ),
        (
            "no first bonus on the 2nd",
            vec![first("w", 50)],
            spend(1).number(2),
            0,
            None,
        ),
        (
            "birthday bonus",
            vec![birthday("b", 200)],
            spend(1).birthday(false),
            200,
            None,
        ),
        (
            "birthday bonus once a year",
            vec![birthday("b", 200)],
            spend(1).birthday(true),
            0,
            None,
        ),
        (
            "no birthday, no bonus",
            vec![birthday("b", 200)],
            spend(1),
            0,
            None,
        ),
        (
            "referee bonus on the first purchase",
            vec![referral("ref", 100, 50)],
            spend(1).number(1).referred(),
            100,
            Some(vec![("ref", 100)]),
        ),
        (
            "no referee bonus on the 2nd",
            vec![referral("ref", 100, 50)],
            spend(1).referred(),
            0,
            None,
        ),
        (
            "not referred, no bonus",
            vec![referral("ref", 100, 50)],
            spend(1).number(1),
            0,
            None,
        ),
        (
            "SKU x2",
            vec![base(), items("jollof-x2", &["JOLLOF"], &[], 200)],
            spend(0).lines(vec![
                line("JOLLOF", None, 1, 10_000),
                line("RICE", None, 1, 10_000),
            ]),
            300,
            Some(vec![("base", 200), ("jollof-x2", 100)]),
        ),
        (
            "category x3",
            vec![base(), items("drinks-x3", &[], &["drinks"], 300)],
            spend(0).lines(vec![
                line("ZOBO", Some("drinks"), 2, 2_500),
                line("SUYA", Some("food"), 1, 5_000),
            ]),
            200,
            Some(vec![("base", 100), ("drinks-x3", 100)]),
        ),
        (
            "exclusion",
            vec![base(), items("no-tobacco", &["TOBACCO"], &[], 0)],
            spend(0).lines(vec![
                line("TOBACCO", None, 1, 6_000),
                line("BREAD", None, 1, 4_000),
            ]),
            40,
            Some(vec![("base", 100), ("no-tobacco", -60)]),
        ),
        (
            "exclusion of everything",
            vec![base(), items("nothing", &["A"], &["misc"], 0)],
            spend(0).lines(vec![
                line("A", None, 1, 6_000),
                line("B", Some("misc"), 2, 2_000),
            ]),
            0,
            Some(vec![("base", 100), ("nothing", -100)]),
        ),
        (
            "no line items: the whole amount at 100",
            vec![base(), items("x2", &["A"], &[], 200)],
            spend(10_000),
            100,
            Some(vec![("base", 100)]),
        ),
        (
            "first matching multiplier by priority wins",
            vec![
                base(),
                items("a-x2", &["A"], &[], 200).priority(1),
                items("a-excluded", &["A"], &[], 0),
            ],
            spend(0).lines(vec![line("A", None, 1, 10_000)]),
            0,
            Some(vec![("base", 100), ("a-excluded", -100)]),
        ),
        (
            "each weighted line is floored",
            vec![base(), items("x150", &["A"], &[], 150)],
            spend(0).lines(vec![line("A", None, 1, 199)]),
            2,
            Some(vec![("base", 1), ("x150", 1)]),
        ),
        (
            "minimum compares the purchase amount, not the weighted spend",
            vec![pa("r", 100, 1, 10_000), items("half-out", &["A"], &[], 0)],
            spend(0).lines(vec![line("A", None, 1, 5_000), line("B", None, 1, 5_000)]),
            50,
            None,
        ),
        (
            "weekend promotion from Saturday 00:00 local",
            vec![base(), promo("weekend", 200).when(weekend())],
            spend(10_000).at(sat_midnight),
            200,
            Some(vec![("base", 100), ("weekend", 100)]),
        ),
        (
            "no weekend promotion on Friday 23:59:59",
            vec![base(), promo("weekend", 200).when(weekend())],
            spend(10_000).at(fri_last_second),
            100,
            None,
        ),
        (
            "Lagos midnight: Friday 23:30 UTC is Saturday 00:30",
            vec![base(), promo("weekend", 200).when(weekend())],
            spend(10_000).at_utc(2026, 12, 4, 23, 30),
            200,
            None,
        ),
        (
            "Lagos: Friday 22:59 UTC is still Friday",
            vec![base(), promo("weekend", 200).when(weekend())],
            spend(10_000).at_utc(2026, 12, 4, 22, 59),
            100,
            None,
        ),
        (
            "Lagos: Sunday 23:30 UTC is Monday 00:30",
            vec![base(), promo("weekend", 200).when(weekend())],
            spend(10_000).at_utc(2026, 12, 6, 23, 30),
            100,
            None,
        ),
        (
            "Lagos has no DST: July 23:30 UTC is also 00:30",
            vec![base(), promo("weekend", 200).when(weekend())],
            spend(10_000).at_utc(2026, 7, 3, 23, 30),
            200,
            None,
        ),
        (
            "hours window: start inclusive",
            vec![base(), promo("lunch", 200).when(hours(12, 14))],
            spend(10_000).at(local(2026, 12, 2, 12, 0, 0)),
            200,
            None,
        ),
        (
            "hours window: last second inside",
            vec![base(), promo("lunch", 200).when(hours(12, 14))],
            spend(10_000).at(local(2026, 12, 2, 13, 59, 59)),
            200,
            None,
        ),
        (
            "hours window: end exclusive",
            vec![base(), promo("lunch", 200).when(hours(12, 14))],
            spend(10_000).at(local(2026, 12, 2, 14, 0, 0)),
            100,
            None,
        ),
        (
            "hours window to 24 includes 23:59:59",
            vec![base(), promo("late", 200).when(hours(22, 24))],
            spend(10_000).at(local(2026, 12, 2, 23, 59, 59)),
            200,
            None,
        ),
        (
            "date range: first day from 00:00",
            vec![base(), promo("advent", 200).when(december_1_to_24())],
            spend(10_000).at(local(2026, 12, 1, 0, 0, 0)),
            200,
            None,
        ),
        (
            "date range: the day before",
            vec![base(), promo("advent", 200).when(december_1_to_24())],
            spend(10_000).at(local(2026, 11, 30, 23, 59, 59)),
            100,
            None,
        ),
        (
            "date range: last day inclusive",
            vec![base(), promo("advent", 200).when(december_1_to_24())],
            spend(10_000).at(local(2026, 12, 24, 23, 59, 59)),
            200,
            None,
        ),
        (
            "date range: the day after",
            vec![base(), promo("advent", 200).when(december_1_to_24())],
            spend(10_000).at(local(2026, 12, 25, 0, 0, 0)),
            100,
            None,
        ),
        (
            "a window gates a base rule too",
            vec![flat("mondays", 10).when(Window {
                weekdays: Some(vec![Weekday::Mon]),
                ..Window::default()
            })],
            spend(1),
            0,
            None,
        ),
        (
            "tier multiplier when the tier matches",
            vec![base(), tier("gold", "gold", 150)],
            spend(10_000).tier("gold"),
            150,
            Some(vec![("base", 100), ("gold", 50)]),
        ),
        (
            "no tier, no multiplier",
            vec![base(), tier("gold", "gold", 150)],
            spend(10_000),
            100,
            None,
        ),
        (
            "another tier, no multiplier",
            vec![base(), tier("gold", "gold", 150)],
            spend(10_000).tier("silver"),
            100,
            None,
        ),
        (
            "two promotions add, they do not compound",
            vec![base(), promo("double", 200), promo("half-more", 150)],
            spend(10_000),
            250,
            Some(vec![("base", 100), ("double", 100), ("half-more", 50)]),
        ),
        (
            "exclusive group picks the larger promotion",
            vec![
                base(),
                promo("half-more", 150).exclusive("promos"),
                promo("double", 200).exclusive("promos"),
            ],
            spend(10_000),
            200,
            Some(vec![("base", 100), ("double", 100)]),
        ),
        (
            "exclusive tie: lower priority wins",
            vec![
                flat("later", 10).priority(5).exclusive("welcome"),
                flat("sooner", 10).priority(1).exclusive("welcome"),
            ],
            spend(1),
            10,
            Some(vec![("sooner", 10)]),
        ),
        (
            "exclusive tie, equal priority: earlier position wins",
            vec![
                flat("one", 10).exclusive("welcome"),
                flat("two", 10).exclusive("welcome"),
            ],
            spend(1),
            10,
            Some(vec![("one", 10)]),
        ),
        (
            "exclusive group among base rules: the bonus that applies",
            vec![
                flat("flat", 10).exclusive("g"),
                first("first", 50).exclusive("g"),
            ],
            spend(1).number(1),
            50,
            Some(vec![("first", 50)]),
        ),
        (
            "exclusive group: a rule that does not apply does not win",
            vec![
                flat("flat", 10).exclusive("g"),
                first("first", 50).exclusive("g"),
            ],
            spend(1).number(2),
            10,
            Some(vec![("flat", 10)]),
        ),
        (
            "promotion on listed rules only",
            vec![
                base(),
                flat("flat", 10),
                promo_on("double-base", 200, &["base"]),
            ],
            spend(10_000),
            210,
            Some(vec![("base", 100), ("flat", 10), ("double-base", 100)]),
        ),
        (
            "promotion multiplies the weighted base",
            vec![
                base(),
                items("all-x2", &["A"], &[], 200),
                promo("double", 200),
            ],
            spend(0).lines(vec![line("A", None, 1, 10_000)]),
            400,
            Some(vec![("base", 100), ("all-x2", 100), ("double", 200)]),
        ),
        (
            "a percent below 100 floors toward zero points",
            vec![flat("flat", 5), promo("half", 50)],
            spend(1),
            2,
            Some(vec![("flat", 5), ("half", -3)]),
        ),
        (
            "multipliers never take the total below zero",
            vec![flat("flat", 10), promo("none", 0), promo("none-again", 0)],
            spend(1),
            0,
            Some(vec![("flat", 10), ("none", -10)]),
        ),
        (
            "purchase cap reached exactly",
            vec![base(), purchase_cap("cap", 100)],
            spend(10_000),
            100,
            Some(vec![("base", 100)]),
        ),
        (
            "purchase cap bites",
            vec![base(), purchase_cap("cap", 100)],
            spend(15_000),
            100,
            Some(vec![("base", 150), ("cap", -50)]),
        ),
        (
            "purchase cap covers bonuses",
            vec![first("first", 500), purchase_cap("cap", 200)],
            spend(1).number(1),
            200,
            None,
        ),
        (
            "daily cap partly used",
            vec![base(), daily_cap("day", 100)],
            spend(10_000).earned_today(80),
            20,
            Some(vec![("base", 100), ("day", -80)]),
        ),
        (
            "daily cap already full",
            vec![base(), daily_cap("day", 100)],
            spend(10_000).earned_today(100),
            0,
            Some(vec![("base", 100), ("day", -100)]),
        ),
        (
            "daily cap overfull still gives zero, not less",
            vec![base(), daily_cap("day", 100)],
            spend(10_000).earned_today(150),
            0,
            None,
        ),
        (
            "purchase cap, then daily cap",
            vec![daily_cap("day", 100), base(), purchase_cap("cap", 60)],
            spend(10_000).earned_today(50),
            50,
            Some(vec![("base", 100), ("cap", -40), ("day", -10)]),
        ),
        (
            "rules stack",
            vec![pa("r", 10_000, 1, 0), flat("f", 5), milestone("m", 3, 50)],
            spend(30_000).number(3),
            58,
            None,
        ),
        (
            "priority orders the breakdown",
            vec![flat("b", 2).priority(2), flat("a", 1).priority(1)],
            spend(1),
            3,
            Some(vec![("a", 1), ("b", 2)]),
        ),
        (
            "welcome purchase: everything at once",
            vec![
                base(),
                first("first", 50),
                referral("ref", 100, 25),
                promo("weekend", 200).when(weekend()),
                purchase_cap("cap", 1_000),
            ],
            spend(10_000).number(1).referred().at(sat_midnight),
            500,
            Some(vec![
                ("base", 100),
                ("first", 50),
                ("ref", 100),
                ("weekend", 250),
            ]),
        ),
    ]
}

#[test]
fn scenarios_earn_what_the_table_says() {
    let table = scenarios();
    assert!(table.len() >= 45, "{} scenarios", table.len());
    for (name, rules, facts, expected, breakdown) in table {
        let set = RuleSet::new(1, rules).unwrap_or_else(|e| panic!("{name}: {e}"));
        let earning = set.evaluate(facts.borrow()).unwrap();
        assert_eq!(earning.total.value(), expected, "{name}: {earning:?}");
        let sum: i64 = earning.breakdown.iter().map(|r| r.points.value()).sum();
        assert_eq!(sum, expected, "{name}: the breakdown adds up");
        if let Some(lines) = breakdown {
            let got: Vec<(&str, i64)> = earning
                .breakdown
                .iter()
                .map(|r| (r.rule_id.as_str(), r.points.value()))
                .collect();
            assert_eq!(got, lines, "{name}: breakdown");
        }
    }
}

#[test]
fn the_referrer_bonus_is_returned_apart() {
    let set = RuleSet::new(1, vec![referral("ref", 100, 25)]).unwrap();
    let first = spend(1).number(1).referred();
    let earning = set.evaluate(first.borrow()).unwrap();
    assert_eq!(earning.total, Points::new(100));
    assert_eq!(earning.referrer_bonus, Points::new(25));
    let second = spend(1).number(2).referred();
    assert_eq!(
        set.evaluate(second.borrow()).unwrap().referrer_bonus,
        Points::ZERO
    );
}

#[test]
fn the_breakdown_names_each_rule_and_its_kind() {
    let set = RuleSet::new(2, vec![base(), milestone("tenth", 1, 9)]).unwrap();
    let earning = set.evaluate(spend(300).borrow()).unwrap();
    assert_eq!(
        earning.breakdown,
        vec![
            RulePoints {
                rule_id: "base".into(),
                kind: KindName::PerAmountSpent,
                points: Points::new(3)
            },
            RulePoints {
                rule_id: "tenth".into(),
                kind: KindName::Milestone,
                points: Points::new(9)
            },
        ]
    );
}

#[test]
fn local_time_is_lagos_time_all_year() {
    for month in [1, 7] {
        let utc = Utc.with_ymd_and_hms(2026, month, 10, 23, 30, 0).unwrap();
        assert_eq!(
            local_time(DEFAULT_TIME_ZONE, utc),
            local(2026, month, 11, 0, 30, 0)
        );
    }
}

fn invalid_field<'a>(rule: &'a str, field: &'static str) -> impl Fn(&InvalidRuleSet) -> bool + 'a {
    move |error| error.rule() == Some(rule) && error.field() == Some(field)
}

#[test]
fn invalid_rule_sets_are_refused_naming_the_rule_and_field() {
    let window = |w: Window| flat("w", 1).when(w);
    let long_id = "x".repeat(41);
    let cases: Vec<(Vec<Rule>, &str, &str)> = vec![
        (vec![pa("r", 0, 1, 0)], "r", "kind.amount_step"),
        (vec![pa("r", 1, -1, 0)], "r", "kind.points_per_step"),
        (
            vec![pa("r", 1, Points::COMMAND_MAX + 1, 0)],
            "r",
            "kind.points_per_step",
        ),
        (vec![pa("r", 1, 1, -1)], "r", "kind.minimum_purchase"),
        (vec![milestone("m", 0, 1)], "m", "kind.every_nth_purchase"),
        (vec![flat("Bad Id", 1)], "Bad Id", "id"),
        (vec![flat("", 1)], "", "id"),
        (vec![flat(&long_id, 1)], &long_id, "id"),
        (vec![flat("a", 1), flat("a", 2)], "a", "id"),
        (vec![promo("p", 1001)], "p", "kind.percent"),
        (vec![tier("t", "", 150)], "t", "kind.tier"),
        (vec![items("i", &[], &[], 200)], "i", "kind.match"),
        (vec![items("i", &[""], &[], 200)], "i", "kind.match.skus"),
        (vec![purchase_cap("c", -1)], "c", "kind.max"),
        (vec![purchase_cap("c", 1).exclusive("g")], "c", "stacking"),
        (
            vec![flat("f", 1).exclusive("Not A Group")],
            "f",
            "stacking.group",
        ),
        (
            vec![flat("f", 1).exclusive("g"), promo("p", 200).exclusive("g")],
            "p",
            "stacking.group",
        ),
        (
            vec![window(Window {
                from: NaiveDate::from_ymd_opt(2026, 12, 2),
                to: NaiveDate::from_ymd_opt(2026, 12, 1),
                ..Window::default()
            })],
            "w",
            "when.to",
        ),
        (vec![window(hours(14, 12))], "w", "when.hours"),
        (vec![window(hours(12, 12))], "w", "when.hours"),
        (vec![window(hours(0, 25))], "w", "when.hours.end"),
        (
            vec![window(Window {
                weekdays: Some(vec![]),
                ..Window::default()
            })],
            "w",
            "when.weekdays",
        ),
        (vec![promo_on("p", 200, &["ghost"])], "p", "kind.applies_to"),
        (
            vec![
                flat("f", 1),
                promo("other", 200),
                promo_on("p", 200, &["other"]),
            ],
            "p",
            "kind.applies_to",
        ),
        (vec![promo_on("p", 200, &[])], "p", "kind.applies_to"),
    ];
    for (rules, rule, field) in cases {
        let error = RuleSet::new(1, rules.clone()).expect_err(&format!("{rules:?}"));
        assert!(
            invalid_field(rule, field)(&error),
            "{rules:?}: {error:?} should name {rule}.{field}"
        );
    }
    assert_eq!(RuleSet::new(0, vec![]), Err(InvalidRuleSet::VersionZero));
    let many: Vec<Rule> = (0..33).map(|n| flat(&format!("r{n}"), 1)).collect();
    assert_eq!(RuleSet::new(1, many), Err(InvalidRuleSet::TooManyRules));
    let full: Vec<Rule> = (0..32).map(|n| flat(&format!("r{n}"), 1)).collect();
    assert!(RuleSet::new(1, full).is_ok());
}

#[test]
fn overflow_is_reported_not_wrapped() {
    let set = RuleSet::new(1, vec![pa("r", 1, Points::COMMAND_MAX, 0)]).unwrap();
    let result = set.evaluate(spend(MinorUnits::AMOUNT_MAX).borrow());
    assert_eq!(result, Err(EarningOverflow));
}

#[test]
fn the_starter_set_is_valid() {
    let starter = RuleSet::starter();
    assert_eq!(
        RuleSet::new(starter.version(), starter.rules().to_vec()),
        Ok(starter)
    );
}

// --- Property: any valid set, any facts -----------------------------------------------

fn any_window() -> impl Strategy<Value = Option<Window>> {
    let weekdays = prop::collection::vec(0u8..7, 1..=7).prop_map(|days| {
        days.into_iter()
            .map(|d| Weekday::try_from(d).unwrap())
            .collect::<Vec<_>>()
    });
    prop_oneof![
        3 => Just(None),
        1 => (prop::option::of(weekdays), prop::option::of((0u8..24, 1u8..=24)))
            .prop_map(|(weekdays, hours)| Some(Window {
                weekdays,
                hours: hours.map(|(a, b)| Hours {
                    start: a.min(b.saturating_sub(1)),
                    end: b.max(a + 1).min(24),
                }),
                ..Window::default()
            })),
    ]
}

fn any_kind() -> impl Strategy<Value = RuleKind> {
    let points = || prop_oneof![0i64..=1_000, Just(Points::COMMAND_MAX)].prop_map(Points::new);
    let percent = || prop_oneof![Just(0u32), Just(100u32), 0u32..=1000];
    prop_oneof![
        (1i64..=100_000, points(), 0i64..=100_000).prop_map(|(s, p, m)| {
            RuleKind::PerAmountSpent {
                amount_step: MinorUnits::new(s),
                points_per_step: p,
                minimum_purchase: MinorUnits::new(m),
            }
        }),
        points().prop_map(|points| RuleKind::PerPurchase { points }),
        (1u32..=5, points()).prop_map(|(n, bonus)| RuleKind::Milestone {
            every_nth_purchase: n,
            bonus
        }),
        points().prop_map(|bonus| RuleKind::FirstPurchase { bonus }),
        points().prop_map(|bonus| RuleKind::Birthday { bonus }),
        (points(), points()).prop_map(|(a, b)| RuleKind::Referral {
            referee_bonus: a,
            referrer_bonus: b
        }),
        (
            prop::sample::subsequence(vec!["A", "B", "C"], 1..=2),
            percent()
        )
            .prop_map(|(skus, percent)| RuleKind::ItemMultiplier {
                item_match: ItemMatch {
                    skus: skus.into_iter().map(Into::into).collect(),
                    categories: vec!["food".into()],
                },
                percent
            }),
        percent().prop_map(|percent| RuleKind::Promotion {
            percent,
            applies_to: AppliesTo::AllBaseRules
        }),
        percent().prop_map(|percent| RuleKind::TierMultiplier {
            tier: "gold".into(),
            percent
        }),
        points().prop_map(|max| RuleKind::PurchaseCap { max }),
        points().prop_map(|max| RuleKind::DailyCap { max }),
    ]
}

fn any_rules() -> impl Strategy<Value = Vec<Rule>> {
    prop::collection::vec(
        (any_kind(), 0u16..4, prop::option::of(0u8..2), any_window()),
        0..=8,
    )
    .prop_map(|rules| {
        rules
            .into_iter()
            .enumerate()
            .map(|(n, (kind, priority, group, when))| {
                let phase = kind.phase();
                let stacking = match group {
                    // One group name per phase, so groups never span phases.
                    Some(g) if phase != Phase::Cap => Stacking::Exclusive {
                        group: format!("g{g}-{phase:?}").to_lowercase(),
                    },
                    _ => Stacking::Stack,
                };
                Rule {
                    id: format!("r{n}"),
                    priority,
                    stacking,
                    when,
                    kind,
                }
            })
            .collect()
    })
}

fn any_facts() -> impl Strategy<Value = Facts> {
    let lines = prop::collection::vec(
        (
            prop::sample::select(vec!["A", "B", "C", "D"]),
            prop::option::of(Just("food")),
            1u32..=5,
            0i64..=1_000_000,
        ),
        0..=4,
    );
    (
        lines,
        1i64..=10_000_000,
        1u32..=12,
        0i64..=86_400 * 7,
        prop::option::of(prop::sample::select(vec!["gold", "silver"])),
        0i64..=2_000,
        any::<(bool, bool, bool)>(),
    )
        .prop_map(
            |(lines, amount, number, seconds, tier, earned_today, flags)| {
                let facts = Facts {
                    amount,
                    number,
                    local: local(2026, 11, 30, 0, 0, 0) + chrono::Duration::seconds(seconds),
                    lines: Vec::new(),
                    tier,
                    earned_today,
                    birthday_today: flags.0,
                    birthday_given: flags.1,
                    referred: flags.2,
                };
                if lines.is_empty() {
                    facts
                } else {
                    facts.lines(
                        lines
                            .into_iter()
                            .map(|(sku, category, q, price)| line(sku, category, q, price))
                            .collect(),
                    )
                }
            },
        )
}

/// The seed of the rules property, fixed so that every run (and CI) sees the same cases.
const RULES_PROPERTY_SEED: u64 = 0x5EED_2015_0F00;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        rng_seed: proptest::test_runner::RngSeed::Fixed(RULES_PROPERTY_SEED),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_valid_set_gives_a_total_that_adds_up_and_respects_the_caps(
        rules in any_rules(),
        facts in any_facts(),
    ) {
        let set = RuleSet::new(1, rules).expect("generated sets are valid");
        let Ok(earning) = set.evaluate(facts.borrow()) else {
            // Only near-the-limit points may overflow, and then it is reported.
            return Ok(());
        };
        let total = earning.total.value();
        prop_assert!(total >= 0);
        let sum: i128 = earning.breakdown.iter().map(|r| i128::from(r.points.value())).sum();
        prop_assert_eq!(sum, i128::from(total));
        let applies = |rule: &&Rule| rule.when.as_ref().is_none_or(|w| w.holds(facts.local));
        for rule in set.rules().iter().filter(applies) {
            match rule.kind {
                RuleKind::PurchaseCap { max } => prop_assert!(total <= max.value()),
                RuleKind::DailyCap { max } => {
                    prop_assert!(total <= (max.value() - facts.earned_today).max(0));
                }
                _ => {}
            }
        }
        prop_assert!(earning.referrer_bonus.value() >= 0);
    }
}
