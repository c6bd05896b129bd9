//! Properties of SMS segment counting: the documented sizes for plain GSM-7, the capacity
//! bounds for any body, the encoding choice, and that a longer body never takes fewer segments.

use proptest::prelude::*;
use voxbridge_twilio::messaging::segments::gsm7_septets;
use voxbridge_twilio::messaging::{Encoding, count_segments};

/// Characters of every kind: basic GSM-7, GSM-7 extension, BMP non-GSM, astral (emoji).
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::sample::select("abcXYZ019 .,!?@£éüÇ\n".chars().collect::<Vec<_>>()),
        2 => proptest::sample::select("^{}\\[~]|€".chars().collect::<Vec<_>>()),
        1 => proptest::sample::select("жЖ’“中ş".chars().collect::<Vec<_>>()),
        1 => proptest::sample::select("😀👍🎉🚀".chars().collect::<Vec<_>>()),
    ]
}

fn body(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any_char(), 0..max).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #[test]
    fn plain_gsm7_is_160_then_153(n in 0usize..1000) {
        let c = count_segments(&"a".repeat(n));
        let expected = if n <= 160 { 1 } else { n.div_ceil(153) };
        prop_assert_eq!((c.encoding, c.segments, c.units), (Encoding::Gsm7, expected, n));
    }

    #[test]
    fn segments_hold_every_unit_and_waste_at_most_one_per_boundary(body in body(500)) {
        let c = count_segments(&body);
        let (single, multi) = (c.encoding.single_segment_units(), c.encoding.multi_segment_units());
        if c.segments == 1 {
            prop_assert!(c.units <= single);
        } else {
            prop_assert!(c.units > single);
            prop_assert!(c.units <= c.segments * multi);
            // Greedy filling leaves at most one unit free per segment (an unsplittable
            // two-unit character), so one segment fewer could not have held the body.
            prop_assert!((c.segments - 1) * (multi - 1) < c.units);
        }
    }

    #[test]
    fn encoding_is_gsm7_exactly_when_every_char_has_a_septet_form(body in body(200)) {
        let c = count_segments(&body);
        let all_gsm = body.chars().all(|ch| gsm7_septets(ch).is_some());
        prop_assert_eq!(c.encoding == Encoding::Gsm7, all_gsm);
        let units: usize = if all_gsm {
            body.chars().map(|ch| gsm7_septets(ch).unwrap_or(0)).sum()
        } else {
            body.encode_utf16().count()
        };
        prop_assert_eq!(c.units, units);
    }

    #[test]
    fn appending_never_reduces_the_count(body in body(400), extra in any_char()) {
        let before = count_segments(&body).segments;
        let after = count_segments(&format!("{body}{extra}")).segments;
        prop_assert!(after >= before, "{before} -> {after}");
    }
}
