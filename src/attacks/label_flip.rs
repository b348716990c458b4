//! Label flipping: a share of the training labels is replaced according to a mapping.

use super::selection::{Selection, select};
use super::{PoisonReport, check_rate, class_id};
use crate::data::ImageSet;
use crate::error::{Error, Result};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mapping {
    /// Every flipped label becomes `to`.
    ToClass,
    /// Every flipped label becomes a uniformly drawn different class.
    Random,
    /// Class i becomes `permutation[i]` (default: the next class, i → i+1 mod K).
    #[default]
    Permutation,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabelFlip {
    /// Share of the training set whose labels flip (1.0 = all).
    pub rate: f64,
    #[serde(default)]
    pub mapping: Mapping,
    /// Target class for `mapping = "to_class"`.
    #[serde(default)]
    pub to: Option<String>,
    /// New class for each class, in class order, for `mapping = "permutation"`.
    #[serde(default)]
    pub permutation: Vec<String>,
    #[serde(default)]
    pub selection: Selection,
}

impl LabelFlip {
    pub fn validate(&self, classes: &[String]) -> Result<()> {
        check_rate(self.rate, "attack.rate")?;
        self.table(classes).map(|_| ())
    }

    /// Per-class replacement (None for `random`).
    fn table(&self, classes: &[String]) -> Result<Option<Vec<i64>>> {
        let k = classes.len();
        Ok(match self.mapping {
            Mapping::Random => None,
            Mapping::ToClass => {
                let to = self.to.as_deref().ok_or_else(|| {
                    Error::param("attack.to", "is required with mapping = \"to_class\"")
                })?;
                Some(vec![class_id(classes, to, "attack.to")?; k])
            }
            Mapping::Permutation if self.permutation.is_empty() => {
                Some((0..k as i64).map(|c| (c + 1) % k as i64).collect())
            }
            Mapping::Permutation => {
                let p: Vec<i64> = self
                    .permutation
                    .iter()
                    .map(|c| class_id(classes, c, "attack.permutation"))
                    .collect::<Result<_>>()?;
                let mut sorted = p.clone();
                sorted.sort_unstable();
                if sorted != (0..k as i64).collect::<Vec<_>>() {
                    return Err(Error::param(
                        "attack.permutation",
                        format!("must name each of the {k} classes exactly once"),
                    ));
                }
                Some(p)
            }
        })
    }

    pub fn poison(&self, set: &mut ImageSet, seed: u64) -> Result<PoisonReport> {
        self.validate(&set.classes)?;
        let table = self.table(&set.classes)?;
        let k = set.num_classes() as i64;
        // Samples whose label would not change are not eligible.
        let allowed: Vec<bool> = (0..k)
            .map(|c| table.as_ref().is_none_or(|t| t[c as usize] != c))
            .collect();
        let indices = select(set, self.rate, &allowed, self.selection, seed)?;
        let mut rng = StdRng::seed_from_u64(seed ^ crate::seed::stream::LABEL_FLIP);
        let mut per_class = vec![0; k as usize];
        for &i in &indices {
            let old = set.labels[i];
            per_class[old as usize] += 1;
            set.labels[i] = match &table {
                Some(t) => t[old as usize],
                None => (old + rng.random_range(1..k)) % k,
            };
        }
        Ok(PoisonReport {
            indices,
            per_class,
            of: set.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> ImageSet {
        let mut s = ImageSet::empty(1, 1, 1, vec!["x".into(), "y".into(), "z".into()]);
        for i in 0..30 {
            s.push(&[0.0], (i % 3) as i64, i.to_string());
        }
        s
    }

    #[test]
    fn full_flip_with_default_permutation() {
        let mut s = set();
        let lf = LabelFlip {
            rate: 1.0,
            mapping: Mapping::Permutation,
            to: None,
            permutation: vec![],
            selection: Selection::Uniform,
        };
        let r = lf.poison(&mut s, 0).unwrap();
        assert_eq!(r.indices.len(), 30);
        assert!((0..30).all(|i| s.labels[i] == ((i % 3) as i64 + 1) % 3));
    }

    #[test]
    fn to_class_and_random() {
        let mut s = set();
        let lf = LabelFlip {
            rate: 0.5,
            mapping: Mapping::ToClass,
            to: Some("z".into()),
            permutation: vec![],
            selection: Selection::Uniform,
        };
        let r = lf.poison(&mut s, 1).unwrap();
        assert_eq!(r.per_class[2], 0, "class z is already z");
        assert_eq!(s.labels.iter().filter(|&&l| l == 2).count(), 25);
        let mut s = set();
        let orig = s.labels.clone();
        let r = LabelFlip {
            mapping: Mapping::Random,
            to: None,
            rate: 0.4,
            ..lf.clone()
        }
        .poison(&mut s, 2)
        .unwrap();
        assert_eq!(r.indices.len(), 12);
        assert!(r.indices.iter().all(|&i| s.labels[i] != orig[i]));
        let bad = LabelFlip {
            mapping: Mapping::Permutation,
            permutation: vec!["x".into(), "x".into(), "y".into()],
            ..lf
        };
        assert!(bad.validate(&s.classes).is_err());
    }
}
