use std::time::{SystemTime, UNIX_EPOCH};

/// A fresh content ID for `ProduceID` or `PropagateID`: 32 lowercase hex digits, the first 12 the
/// Unix time in milliseconds (so IDs sort by creation, like UUIDv7) and the other 20 random.
/// Uses only characters Annex E j) allows.
pub fn new_content_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut random = [0u8; 10];
    getrandom::getrandom(&mut random).expect("the operating system's random source is available");
    let mut id = format!("{:012x}", millis & 0xffff_ffff_ffff);
    for b in random {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_valid() {
        let a = super::new_content_id();
        let b = super::new_content_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(crate::validate_value_charset(&a).is_ok());
    }
}
