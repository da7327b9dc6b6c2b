//! The orders of a `Book`: found by id in constant time while a fold runs, walked in id
//! order wherever order matters (stored keys, digests, output).
//!
//! A fold looks its event's order up once per event. In a `BTreeMap` of 220,000 orders that
//! search was the largest single cost of a rebuild after decoding (string comparisons, one
//! per level: `memcmp` and `Ord::cmp`). Here the lookup is a hash, and the entries sit in a vector in the order they were
//! first seen. Ids are usually handed out in increasing order, so that order is already the id
//! order and a walk costs nothing more; otherwise a walk sorts references to the entries first
//! (what the `BTreeMap` paid on every insert, paid once).

use indexmap::IndexMap;

use crate::domain::{OrderId, OrderState};

/// Every order's state, by id.
#[derive(Clone, Debug, Default)]
pub struct Orders {
    map: IndexMap<OrderId, OrderState>,
    /// Whether some id was added after a greater one: then the entries of `map` are not in
    /// id order.
    out_of_order: bool,
}

impl Orders {
    /// Room for `orders` orders without growing (a fold that knows how many it will meet
    /// moves no entry while it runs).
    pub fn with_capacity(orders: usize) -> Orders {
        Orders {
            map: IndexMap::with_capacity(orders),
            out_of_order: false,
        }
    }

    /// The state of one order.
    pub fn get(&self, id: &OrderId) -> Option<&OrderState> {
        self.map.get(id)
    }

    /// The state of one order, to fold an event into.
    pub fn get_mut(&mut self, id: &OrderId) -> Option<&mut OrderState> {
        self.map.get_mut(id)
    }

    /// Adds an order that is not there yet.
    pub fn insert_new(&mut self, id: OrderId, state: OrderState) {
        self.out_of_order |= self.map.last().is_some_and(|(last, _)| *last > id);
        let previous = self.map.insert(id, state);
        assert!(previous.is_none(), "an order is inserted once");
    }

    /// How many orders there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every order, in id order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&OrderId, &OrderState)> + '_> {
        if !self.out_of_order {
            return Box::new(self.map.iter());
        }
        let mut entries: Vec<_> = self.map.iter().collect();
        // Stable: its merge sort takes runs already in order as they are, and ids first seen
        // out of order are usually a few among long runs (orders placed late).
        entries.sort_by(|a, b| a.0.cmp(b.0));
        Box::new(entries.into_iter())
    }

    /// Every order's state, in id order.
    pub fn values(&self) -> impl Iterator<Item = &OrderState> {
        self.iter().map(|(_, state)| state)
    }
}

impl FromIterator<(OrderId, OrderState)> for Orders {
    fn from_iter<I: IntoIterator<Item = (OrderId, OrderState)>>(entries: I) -> Self {
        let entries = entries.into_iter();
        let mut orders = Orders::with_capacity(entries.size_hint().0);
        for (id, state) in entries {
            orders.insert_new(id, state);
        }
        orders
    }
}

/// Two books hold the same orders whatever order they were first seen in.
impl PartialEq for Orders {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl Eq for Orders {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Amount, Currency, CustomerId, Position, Status, Timestamp, Version};

    fn state(id: &str) -> (OrderId, OrderState) {
        let order_id = OrderId::new(id).expect("a valid id");
        let state = OrderState {
            order_id: order_id.clone(),
            customer_id: CustomerId::new("C-1").expect("a valid id"),
            status: Status::Placed,
            currency: Currency::new("EUR").expect("a valid code"),
            lines: Vec::new(),
            total: Amount::ZERO,
            paid: Amount::ZERO,
            refunded: Amount::ZERO,
            shipping_address: None,
            placed_at: Timestamp::from_micros(0).expect("in range"),
            updated_at: Timestamp::from_micros(0).expect("in range"),
            version: Version(1),
            position: Position(1),
        };
        (order_id, state)
    }

    fn ids(orders: &Orders) -> Vec<&str> {
        orders.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn orders_are_walked_in_id_order_whatever_order_they_arrived_in() {
        let increasing: Orders = ["A", "B", "C", "D"].map(state).into_iter().collect();
        let shuffled: Orders = ["C", "A", "D", "B"].map(state).into_iter().collect();
        assert_eq!(ids(&increasing), ["A", "B", "C", "D"]);
        assert_eq!(ids(&shuffled), ["A", "B", "C", "D"]);
        assert_eq!(increasing, shuffled, "the same orders compare equal");
        let values: Vec<&str> = shuffled.values().map(|s| s.order_id.as_str()).collect();
        assert_eq!(values, ["A", "B", "C", "D"]);
    }

    #[test]
    fn an_id_that_sorts_before_the_last_one_is_still_walked_in_place() {
        let mut orders: Orders = ["A", "C"].map(state).into_iter().collect();
        let (id, s) = state("B");
        orders.insert_new(id, s);
        let (id, s) = state("D");
        orders.insert_new(id, s);
        assert_eq!(ids(&orders), ["A", "B", "C", "D"]);
        let b = OrderId::new("B").expect("a valid id");
        assert_eq!(orders.get(&b).map(|s| s.order_id.as_str()), Some("B"));
        assert_eq!(orders.len(), 4);
    }

    #[test]
    fn orders_with_different_states_differ() {
        let a: Orders = ["A", "B"].map(state).into_iter().collect();
        let mut b = a.clone();
        let id = OrderId::new("B").expect("a valid id");
        b.get_mut(&id).expect("present").status = Status::Paid;
        assert_ne!(a, b);
        let c: Orders = ["A", "C"].map(state).into_iter().collect();
        assert_ne!(a, c);
    }
}
