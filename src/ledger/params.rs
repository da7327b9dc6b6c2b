//! Request parameters as text (CLI flags, HTTP query strings) turned into domain values once,
//! in one place, so that `ordo query ... --status paid` and `GET /v1/query/orders?status=paid`
//! accept exactly the same inputs and refuse the same ones with the same words. Messages name
//! the parameter as the caller spelled it (`--as-of` or `as_of`).

use crate::domain::{Actor, Currency, CustomerId, OrderId, Position, Status, Timestamp};
use crate::error::{Error, Result};
use crate::projection::Day;
use crate::projection::query::{OrderFilter, Period, RevenueFilter};

use super::Filter;

/// How parameters are spelled in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// Command-line flags: `--as-of`.
    Flags,
    /// Query-string fields: `as_of`.
    Fields,
}

impl Naming {
    /// `field` (snake_case) as the caller spells it.
    pub fn name(self, field: &str) -> String {
        match self {
            Naming::Flags => format!("--{}", field.replace('_', "-")),
            Naming::Fields => field.to_owned(),
        }
    }
}

fn invalid(naming: Naming, field: &str, text: &str, why: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("{} {text:?} {why}", naming.name(field)))
}

/// A time parameter (RFC 3339 or a bare date).
pub fn time(naming: Naming, field: &str, text: &str) -> Result<Timestamp> {
    Timestamp::parse(text).map_err(|e| Error::InvalidInput(format!("{}: {e}", naming.name(field))))
}

/// An optional time parameter.
pub fn time_opt(naming: Naming, field: &str, text: Option<&str>) -> Result<Option<Timestamp>> {
    text.map(|t| time(naming, field, t)).transpose()
}

/// A whole number parameter.
pub fn number(naming: Naming, field: &str, text: &str) -> Result<u64> {
    text.parse()
        .map_err(|_| invalid(naming, field, text, "is not a whole number"))
}

/// The time filters of product.md section 5.
pub fn filter(
    naming: Naming,
    as_of: Option<&str>,
    valid_at: Option<&str>,
    at_position: Option<u64>,
) -> Result<Filter> {
    Ok(Filter {
        as_of: time_opt(naming, "as_of", as_of)?,
        valid_at: time_opt(naming, "valid_at", valid_at)?,
        at_position: at_position.map(Position),
    })
}

/// An order id.
pub fn order_id(text: &str) -> Result<OrderId> {
    OrderId::new(text).map_err(|e| Error::InvalidInput(format!("order id {text:?} {e}")))
}

/// An actor name.
pub fn actor(naming: Naming, text: &str) -> Result<Actor> {
    Actor::new(text).map_err(|e| invalid(naming, "actor", text, e))
}

/// An optional customer id.
pub fn customer(naming: Naming, text: Option<&str>) -> Result<Option<CustomerId>> {
    text.map(|c| CustomerId::new(c).map_err(|e| invalid(naming, "customer", c, e)))
        .transpose()
}

/// The filters of `query orders`.
pub fn order_filter(
    naming: Naming,
    status: Option<&str>,
    customer_id: Option<&str>,
    limit: Option<usize>,
) -> Result<OrderFilter> {
    Ok(OrderFilter {
        status: status
            .map(|s| {
                Status::parse(s)
                    .map_err(|e| Error::InvalidInput(format!("{}: {e}", naming.name("status"))))
            })
            .transpose()?,
        customer: customer(naming, customer_id)?,
        limit,
    })
}

/// The filters of `query revenue`: `by` is `day` or `month`; `from` and `to` are days.
pub fn revenue_filter(
    naming: Naming,
    by: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    currency: Option<&str>,
) -> Result<RevenueFilter> {
    let day = |field, text| time_opt(naming, field, text).map(|t| t.map(Day::of));
    Ok(RevenueFilter {
        by: match by {
            None | Some("day") => Period::Day,
            Some("month") => Period::Month,
            Some(other) => return Err(invalid(naming, "by", other, "is not day or month")),
        },
        from: day("from", from)?,
        to: day("to", to)?,
        currency: currency
            .map(|c| Currency::new(c).map_err(|e| invalid(naming, "currency", c, e)))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_parameter_as_the_caller_spells_it() {
        let flag = filter(Naming::Flags, Some("yesterday"), None, None).expect_err("bad time");
        assert!(flag.to_string().starts_with("--as-of:"), "{flag}");
        let field = filter(Naming::Fields, None, Some("noon"), None).expect_err("bad time");
        assert!(field.to_string().starts_with("valid_at:"), "{field}");
        let by = revenue_filter(Naming::Fields, Some("week"), None, None, None).expect_err("by");
        assert!(by.to_string().contains("by \"week\""), "{by}");
        assert!(order_filter(Naming::Flags, Some("lost"), None, None).is_err());
        assert!(customer(Naming::Flags, Some("")).is_err());
    }

    #[test]
    fn valid_parameters_become_domain_values() {
        let f = filter(Naming::Fields, Some("2026-03-01"), None, Some(7)).expect("valid");
        assert_eq!(f.at_position, Some(Position(7)));
        assert!(f.as_of.is_some() && f.valid_at.is_none());
        let r = revenue_filter(
            Naming::Flags,
            Some("month"),
            Some("2026-01-01"),
            None,
            Some("EUR"),
        )
        .expect("valid");
        assert_eq!(r.by, Period::Month);
        assert_eq!(number(Naming::Fields, "limit", "12").expect("number"), 12);
        assert!(number(Naming::Fields, "limit", "-1").is_err());
    }

    proptest::proptest! {
        /// Whatever a client sends as parameters, parsing answers a value or an
        /// invalid-input error naming the parameter: it never panics or overflows.
        #[test]
        fn any_parameter_text_parses_or_is_refused_as_invalid_input(
            text in proptest::prop_oneof![
                ".{0,40}",
                "[0-9]{1,30}",
                "-?[0-9]{1,20}",
                "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2}))?",
            ],
            at_position in proptest::prelude::any::<Option<u64>>(),
        ) {
            let refused = |result: Result<()>, name: &str| match result {
                Ok(()) => Ok(()),
                Err(Error::InvalidInput(message)) if message.contains(name) => Ok(()),
                Err(other) => Err(proptest::test_runner::TestCaseError::fail(format!("{name}: {other:?}"))),
            };
            refused(number(Naming::Fields, "limit", &text).map(drop), "limit")?;
            refused(filter(Naming::Fields, Some(&text), None, at_position).map(drop), "as_of")?;
            refused(filter(Naming::Flags, None, Some(&text), at_position).map(drop), "--valid-at")?;
            refused(revenue_filter(Naming::Fields, None, Some(&text), None, None).map(drop), "from")?;
            refused(order_filter(Naming::Fields, Some(&text), None, None).map(drop), "status")?;
        }
    }
}
