//! Object identifiers: 25 lowercase base-36 characters from 128 random bits, as Swarm's.

/// A fresh random id.
pub fn new_id() -> String {
    shoal_pki::random_id()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_25_base36_chars_and_differ() {
        let a = super::new_id();
        let b = super::new_id();
        assert_eq!(a.len(), 25);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        assert_ne!(a, b);
    }
}
