//! Correlation ids: the UUID text form (`8-4-4-4-12` hex digits) to and from a `u128`, and
//! counting ids handed out more than once. Ids are kept as 16-byte integers so a run of millions
//! of submits can be checked for duplicates with one sort at the end, off the hot path.

use openhqm::id::CorrelationId;

/// Parses the exact UUID text form, either case (the broker's own parser).
pub fn parse(text: &[u8]) -> Option<u128> {
    CorrelationId::parse(text).map(|id| u128::from_be_bytes(*id.as_bytes()))
}

/// Appends the lower-case UUID text form of `id`.
pub fn write(id: u128, out: &mut Vec<u8>) {
    out.extend_from_slice(&CorrelationId::from_bytes(id.to_be_bytes()).to_text());
}

/// How many entries repeat an earlier one (an id seen three times counts 2). Sorts `ids`.
pub fn count_duplicates(ids: &mut [u128]) -> u64 {
    ids.sort_unstable();
    ids.windows(2).filter(|w| w[0] == w[1]).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_text_form() {
        let text = b"550e8400-e29b-41d4-a716-446655440000";
        let id = parse(text).unwrap();
        assert_eq!(id, 0x550e8400_e29b_41d4_a716_446655440000);
        let mut out = Vec::new();
        write(id, &mut out);
        assert_eq!(out, text);
        assert_eq!(parse(b"550E8400-E29B-41D4-A716-446655440000"), Some(id));
    }

    #[test]
    fn refuses_other_forms() {
        for bad in [
            &b"550e8400e29b41d4a716446655440000"[..],
            b"550e8400-e29b-41d4-a716-44665544000",
            b"550e8400-e29b-41d4-a716-4466554400000",
            b"550e8400-e29b-41d4-a716_446655440000",
            b"550e8400-e29b-41d4-a716-44665544000g",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn counts_repeats() {
        assert_eq!(count_duplicates(&mut []), 0);
        assert_eq!(count_duplicates(&mut [3, 1, 2]), 0);
        assert_eq!(count_duplicates(&mut [5, 1, 5, 2, 5, 1]), 3);
    }
}
