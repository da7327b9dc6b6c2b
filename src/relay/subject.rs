//! Subjects of relayed events: `ordo.events.<type>.<order>`, with the order id encoded into
//! one NATS subject token. A token may not hold `.` (the separator), so `.` is written
//! `_2E`; `_` is the escape character, so `_` itself is written `_5F`. Every other character
//! an order id may hold (`A-Z a-z 0-9 : -`, product.md section 1) stands for itself. The
//! encoding is reversible, so distinct order ids give distinct subjects.

/// The prefix of every relayed subject; the stream takes `ordo.events.>`.
pub const PREFIX: &str = "ordo.events";

/// The subject of an event of `event_type` on order `order_id`.
pub fn subject(event_type: &str, order_id: &str) -> String {
    let mut out = String::with_capacity(PREFIX.len() + event_type.len() + order_id.len() + 8);
    out.push_str(PREFIX);
    out.push('.');
    out.push_str(event_type);
    out.push('.');
    out.push_str(&encode_order(order_id));
    out
}

/// An order id as one subject token.
pub fn encode_order(order_id: &str) -> String {
    let mut out = String::with_capacity(order_id.len() + 4);
    for c in order_id.chars() {
        match c {
            '.' => out.push_str("_2E"),
            '_' => out.push_str("_5F"),
            c => out.push(c),
        }
    }
    out
}

/// The order id a subject token encodes, if it is one `encode_order` writes.
pub fn decode_order(token: &str) -> Option<String> {
    if token.contains('.') {
        return None; // not one token
    }
    let mut out = String::with_capacity(token.len());
    let mut rest = token;
    while let Some(at) = rest.find('_') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        out.push(match escape {
            "_2E" => '.',
            "_5F" => '_',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_and_underscores_are_escaped_and_every_id_comes_back() {
        assert_eq!(
            subject("order_shipped", "ORD-1"),
            "ordo.events.order_shipped.ORD-1"
        );
        assert_eq!(encode_order("a.b_c:d-E9"), "a_2Eb_5Fc:d-E9");
        assert_eq!(
            decode_order("a_2Eb_5Fc:d-E9").as_deref(),
            Some("a.b_c:d-E9")
        );
        assert_eq!(decode_order("a_2"), None);
        assert_eq!(decode_order("a_41"), None);
    }

    proptest::proptest! {
        #[test]
        fn every_valid_order_id_is_one_token_and_decodes_to_itself(id in "[A-Za-z0-9._:-]{1,128}") {
            let token = encode_order(&id);
            proptest::prop_assert!(!token.contains('.') && !token.contains('*') && !token.contains('>'));
            proptest::prop_assert!(!token.chars().any(char::is_whitespace));
            proptest::prop_assert_eq!(decode_order(&token), Some(id));
        }

        #[test]
        fn distinct_ids_give_distinct_tokens(a in "[A-Za-z0-9._:-]{1,12}", b in "[A-Za-z0-9._:-]{1,12}") {
            proptest::prop_assume!(a != b);
            proptest::prop_assert_ne!(encode_order(&a), encode_order(&b));
        }
    }
}
