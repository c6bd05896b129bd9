//! G.711 mu-law companding, the audio format of Twilio Media Streams (8 kHz, 8 bits per sample).
//!
//! Implements ITU-T G.711 (11/1988) section 3 (mu-law, as used in North America and Japan) the
//! way the widely used Sun Microsystems reference code does: a 16-bit linear sample is reduced
//! to 14 bits, biased by 33, split into a 3-bit segment (the exponent) and a 4-bit quantisation
//! step, and every bit of the result is inverted for transmission (G.711 Table 2a).
//!
//! - [`decode_sample`] is a 256-entry table built at compile time.
//! - [`encode_sample`] is a 16 KiB table over the 14-bit input, built at compile time by the
//!   reference bit arithmetic (`leading_zeros` finds the segment).
//!
//! Both are checked exhaustively against `CPython`'s independent `audioop` implementation
//! (`tests/data/mulaw_*_ref.bin`). Code `0x7F` is G.711's "negative zero": it decodes to 0,
//! which encodes back as `0xFF` (positive zero), so it is the one code that does not round-trip.
//!
//! The `encode`/`decode` slice functions append to a caller-provided `Vec`, so the hot path
//! allocates nothing once the `Vec` has grown to a frame's size.

/// Bias added to the magnitude before segment search (G.711: 0x84 = 132 on the 16-bit scale,
/// 33 on the 14-bit scale the encoder works in).
const BIAS: i32 = 0x84;
/// Largest 14-bit magnitude the encoder represents before clipping (8159 + 33 = 8192 = 2^13).
const CLIP_14: i32 = 8159;

/// The decoder table: `DECODE_TABLE[code]` is the linear value of a mu-law code.
static DECODE_TABLE: [i16; 256] = build_decode_table();

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0usize;
    while code < 256 {
        // Transmitted codes are bit-inverted (G.711 Table 2a, "character signal").
        let u = !(code as u8) as i32;
        let step = (u & 0x0F) << 3;
        let segment = (u & 0x70) >> 4;
        let magnitude = (step + BIAS) << segment;
        table[code] = if u & 0x80 != 0 {
            (BIAS - magnitude) as i16
        } else {
            (magnitude - BIAS) as i16
        };
        code += 1;
    }
    table
}

/// Decodes one mu-law code to a 16-bit linear sample (range -32124..=32124).
#[inline]
pub fn decode_sample(code: u8) -> i16 {
    DECODE_TABLE[usize::from(code)]
}

/// The encoder table: `ENCODE_TABLE[i]` is the code of the 14-bit sample whose two's
/// complement bits are `i` (the top 14 bits of the 16-bit input). 16 KiB, built at compile
/// time from [`encode_14bit`]; one load per sample is several times faster than the bit
/// arithmetic and stays in L1 on the hot path.
static ENCODE_TABLE: [u8; 16384] = build_encode_table();

const fn build_encode_table() -> [u8; 16384] {
    let mut table = [0u8; 16384];
    let mut i = 0usize;
    while i < 16384 {
        // Sign-extend the 14-bit pattern.
        let v = ((i as i32) << 18) >> 18;
        table[i] = encode_14bit(v);
        i += 1;
    }
    table
}

/// G.711 mu-law encoding of a 14-bit linear sample (-8192..=8191), after the Sun reference
/// code: bias the magnitude, find the segment, keep 4 mantissa bits, invert.
const fn encode_14bit(v: i32) -> u8 {
    let (magnitude, mask) = if v < 0 { (-v, 0x7F) } else { (v, 0xFF) };
    let clipped = if magnitude > CLIP_14 {
        CLIP_14
    } else {
        magnitude
    };
    let biased = clipped + (BIAS >> 2); // 33..=8192
    // Segment = position of the highest set bit above bit 5 (segment 0 covers 0..=0x3F).
    let top_bit = 31 - biased.leading_zeros() as i32; // 5..=13
    let segment = if top_bit > 5 { top_bit - 5 } else { 0 };
    let code = if segment >= 8 {
        // Only the clipped maximum (8192) lands here: the largest code.
        0x7F
    } else {
        (segment << 4) | ((biased >> (segment + 1)) & 0x0F)
    };
    (code ^ mask) as u8
}

/// Encodes one 16-bit linear sample to a mu-law code. Magnitudes beyond G.711's range clip to
/// the largest code of the same sign.
#[inline]
pub fn encode_sample(s: i16) -> u8 {
    // G.711 mu-law works on 14-bit samples: drop the two low bits (an arithmetic shift, so -1
    // stays -1 as in the reference code); the logical shift of the bit pattern is the same
    // 14 bits, already a valid table index.
    ENCODE_TABLE[usize::from(s as u16 >> 2)]
}

/// Decodes mu-law codes and appends the linear samples to `dst`.
pub fn decode(src: &[u8], dst: &mut Vec<i16>) {
    dst.extend(src.iter().map(|&c| decode_sample(c)));
}

/// Encodes linear samples and appends the mu-law codes to `dst`.
pub fn encode(src: &[i16], dst: &mut Vec<u8>) {
    dst.extend(src.iter().map(|&s| encode_sample(s)));
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENCODE_REF: &[u8; 65536] = include_bytes!("../tests/data/mulaw_encode_ref.bin");
    const DECODE_REF: &[u8; 512] = include_bytes!("../tests/data/mulaw_decode_ref.bin");

    #[test]
    fn every_code_survives_decode_encode_decode() {
        for code in 0..=255u8 {
            let linear = decode_sample(code);
            assert_eq!(
                decode_sample(encode_sample(linear)),
                linear,
                "code {code:#04x}"
            );
        }
    }

    #[test]
    fn every_code_but_negative_zero_round_trips_exactly() {
        for code in 0..=255u8 {
            let back = encode_sample(decode_sample(code));
            if code == 0x7F {
                // Negative zero decodes to 0, and 0 is encoded as positive zero.
                assert_eq!(decode_sample(code), 0);
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, code, "code {code:#04x}");
            }
        }
    }

    #[test]
    fn encoder_matches_audioop_for_all_65536_inputs() {
        for index in 0..=u16::MAX {
            let sample = index as i16;
            assert_eq!(
                encode_sample(sample),
                ENCODE_REF[usize::from(index)],
                "input {sample}"
            );
        }
    }

    #[test]
    fn bit_arithmetic_encoder_matches_audioop_for_all_65536_inputs() {
        for index in 0..=u16::MAX {
            let sample = index as i16;
            assert_eq!(
                encode_14bit(i32::from(sample) >> 2),
                ENCODE_REF[usize::from(index)],
                "input {sample}"
            );
        }
    }

    #[test]
    fn decoder_matches_audioop_for_all_256_codes() {
        for code in 0..=255u8 {
            let i = usize::from(code) * 2;
            let expected = i16::from_le_bytes([DECODE_REF[i], DECODE_REF[i + 1]]);
            assert_eq!(decode_sample(code), expected, "code {code:#04x}");
        }
    }

    #[test]
    fn decoder_extremes_match_g711() {
        // G.711 Table 2a: 0x80 is the largest positive level (8031 on the 13-bit scale), 0x00
        // the largest negative one; the 16-bit values are those levels shifted by 2.
        assert_eq!(decode_sample(0x80), 32124);
        assert_eq!(decode_sample(0x00), -32124);
        assert_eq!(decode_sample(0xFF), 0);
        assert_eq!(encode_sample(i16::MAX), 0x80);
        assert_eq!(encode_sample(i16::MIN), 0x00);
    }

    #[test]
    fn slice_functions_append_without_clearing() {
        let mut pcm = vec![7i16];
        decode(&[0xFF, 0x80], &mut pcm);
        assert_eq!(pcm, [7, 0, 32124]);
        let mut codes = vec![1u8];
        encode(&[0, 32124], &mut codes);
        assert_eq!(codes, [1, 0xFF, 0x80]);
    }
}
