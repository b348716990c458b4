//! Named seed streams. Every random draw of a run derives its seed from the run's seed and one
//! of these stream tags, so draws never share a stream by accident and results do not depend on
//! the order in which things run (or on the number of workers). The tags are ASCII words read as
//! numbers ("pois", "serv", …); changing one changes every result that draws from it.

/// Stream tags, each used in one place.
pub mod stream {
    /// Which training images an attack poisons (centralized: `seed ^ POISON`; per client:
    /// `mix(seed, POISON, client)`).
    pub const POISON: u64 = 0x706f_6973;
    /// The server's own images (Fed-Safe).
    pub const SERVER_IMAGES: u64 = 0x7365_7276;
    /// The server's adaptation (Fed-Safe Algorithm 1).
    pub const ADAPTATION: u64 = 0x6164_6170;
    /// Each client's distributed noise on the model it holds.
    pub const HELD_NOISE: u64 = 0x6e6f_6973;
    /// The evasion attacks' random starts between clients (`seed ^ EVASION`).
    pub const EVASION: u64 = 0x6576_6173;
    /// A client's adversarial-training examples (`mix(seed, round, ADVERSARIAL_TRAINING ^ client)`).
    pub const ADVERSARIAL_TRAINING: u64 = 0x6164_7600;
    /// FLTrust's root set.
    pub const ROOT_SET: u64 = 0x726f_6f74;
    /// The aggregation rule's own draws in a round.
    pub const AGGREGATION: u64 = 0x6167_6772;
    /// Which clients are malicious when drawn.
    pub const MALICIOUS: u64 = 0x6d61;
    /// The partition of the training set among clients.
    pub const PARTITION: u64 = 0x7061;
    /// A client's train/validation split (`mix(seed, VALIDATION, client)`).
    pub const VALIDATION: u64 = 0x7661;
    /// Model poisoning's draws in a round.
    pub const MODEL_POISONING: u64 = 0x6d70;
    /// A backdoor trigger's random pattern or placement (`seed ^ TRIGGER`).
    pub const TRIGGER: u64 = 0x7269_6767_6572;
    /// Random label flips (`seed ^ LABEL_FLIP`).
    pub const LABEL_FLIP: u64 = 0x666c_6970;
    /// The trusted backbone's initialization (`seed ^ PRETRAIN`, "pr").
    pub const PRETRAIN: u64 = 0x7072;
    /// Dropout masks of a training (`seed ^ DROPOUT`).
    pub const DROPOUT: u64 = 0x6472_6f70;
    /// STRIP's choice of test images and of the clean images blended with each input.
    pub const STRIP: u64 = 0x7374_7270;
    /// The per-class cap of the test split (`seed ^ TEST_CAP`; the training split's uses the seed).
    pub const TEST_CAP: u64 = 1;

    /// Every tag, for the distinctness test.
    pub const ALL: [u64; 18] = [
        POISON,
        SERVER_IMAGES,
        ADAPTATION,
        HELD_NOISE,
        EVASION,
        ADVERSARIAL_TRAINING,
        ROOT_SET,
        AGGREGATION,
        MALICIOUS,
        PARTITION,
        VALIDATION,
        MODEL_POISONING,
        TRIGGER,
        LABEL_FLIP,
        PRETRAIN,
        DROPOUT,
        TEST_CAP,
        STRIP,
    ];
}

/// One draw per item (client, parameter block, batch) within a stream: `seed ^ i·step`. The
/// steps are the golden-ratio constant at three widths; each place keeps the one it has always
/// used, so its numbers stay as they were.
pub fn item(seed: u64, i: u64, step: u64) -> u64 {
    seed ^ i.wrapping_mul(step)
}

/// Steps for [`item`].
pub mod step {
    pub const GOLDEN16: u64 = 0x9E37;
    pub const GOLDEN32: u64 = 0x9E37_79B9;
    pub const GOLDEN64: u64 = 0x9E37_79B9_7F4A_7C15;
}

/// Seed for (run seed, round or stream, client), the same whichever worker computes it.
pub fn mix(seed: u64, round: u64, client: u64) -> u64 {
    // SplitMix64 finalizer over the combined words.
    let mut z = seed
        ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ client.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_distinct_and_mix_separates_them() {
        let mut tags = stream::ALL.to_vec();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), stream::ALL.len());
        // Same inputs, same seed; any input changed, another seed.
        assert_eq!(mix(1, stream::POISON, 2), mix(1, stream::POISON, 2));
        assert_ne!(mix(1, stream::POISON, 2), mix(1, stream::POISON, 3));
        assert_ne!(mix(1, stream::POISON, 2), mix(1, stream::PARTITION, 2));
        assert_ne!(mix(1, stream::POISON, 2), mix(2, stream::POISON, 2));
    }
}
