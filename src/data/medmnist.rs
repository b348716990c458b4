//! The MedMNIST v2 2D collection (28×28): each set's file, MD5 and class names, as published
//! with the official release (Yang et al., Scientific Data 2023; Zenodo record 10519652).

use crate::error::{Error, Result};

/// Where `fedsentry data fetch` downloads `<flag>.npz` from by default.
pub const BASE_URL: &str = "https://zenodo.org/records/10519652/files";

#[derive(Debug, Clone, Copy)]
pub struct MedMnist {
    /// The set's name as MedMNIST spells it (`pneumoniamnist`); also the file stem.
    pub flag: &'static str,
    pub md5: &'static str,
    pub channels: usize,
    /// Class names in label order (file-name safe).
    pub classes: &'static [&'static str],
    /// Whether a sample carries several labels at once (ChestMNIST's 14 findings).
    pub multi_label: bool,
    /// Images in train / val / test.
    pub samples: [usize; 3],
    pub license: &'static str,
}

impl MedMnist {
    pub fn file_name(&self) -> String {
        format!("{}.npz", self.flag)
    }

    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|s| s.to_string()).collect()
    }

    /// The file's address under `base_url` (the official record or a mirror of it).
    pub fn url(&self, base_url: &str) -> String {
        format!(
            "{}/{}?download=1",
            base_url.trim_end_matches('/'),
            self.file_name()
        )
    }
}

const ORGANS: &[&str] = &[
    "bladder",
    "femur_left",
    "femur_right",
    "heart",
    "kidney_left",
    "kidney_right",
    "liver",
    "lung_left",
    "lung_right",
    "pancreas",
    "spleen",
];

pub const SETS: &[MedMnist] = &[
    MedMnist {
        flag: "pathmnist",
        md5: "a8b06965200029087d5bd730944a56c1",
        channels: 3,
        classes: &[
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth_muscle",
            "normal_colon_mucosa",
            "cancer_associated_stroma",
            "colorectal_adenocarcinoma_epithelium",
        ],
        multi_label: false,
        samples: [89996, 10004, 7180],
        license: "CC BY 4.0",
    },
    MedMnist {
        flag: "chestmnist",
        md5: "02c8a6516a18b556561a56cbdd36c4a8",
        channels: 1,
        classes: &[
            "atelectasis",
            "cardiomegaly",
            "effusion",
            "infiltration",
            "mass",
            "nodule",
            "pneumonia",
            "pneumothorax",
            "consolidation",
            "edema",
            "emphysema",
            "fibrosis",
            "pleural",
            "hernia",
        ],
        multi_label: true,
        samples: [78468, 11219, 22433],
        license: "CC0 1.0",
    },
    MedMnist {
        flag: "dermamnist",
        md5: "0744692d530f8e62ec473284d019b0c7",
        channels: 3,
        classes: &[
            "actinic_keratoses_and_intraepithelial_carcinoma",
            "basal_cell_carcinoma",
            "benign_keratosis_like_lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic_nevi",
            "vascular_lesions",
        ],
        multi_label: false,
        samples: [7007, 1003, 2005],
        license: "CC BY-NC 4.0",
    },
    MedMnist {
        flag: "octmnist",
        md5: "c68d92d5b585d8d81f7112f81e2d0842",
        channels: 1,
        classes: &[
            "choroidal_neovascularization",
            "diabetic_macular_edema",
            "drusen",
            "normal",
        ],
        multi_label: false,
        samples: [97477, 10832, 1000],
        license: "CC BY 4.0",
    },
    MedMnist {
        flag: "pneumoniamnist",
        md5: "28209eda62fecd6e6a2d98b1501bb15f",
        channels: 1,
        classes: &["normal", "pneumonia"],
        multi_label: false,
        samples: [4708, 524, 624],
        license: "CC BY 4.0",
    },
    MedMnist {
        flag: "retinamnist",
        md5: "bd4c0672f1bba3e3a89f0e4e876791e4",
        channels: 3,
        classes: &["grade0", "grade1", "grade2", "grade3", "grade4"],
        multi_label: false,
        samples: [1080, 120, 400],
        license: "CC BY 4.0",
    },
    MedMnist {
        flag: "breastmnist",
        md5: "750601b1f35ba3300ea97c75c52ff8f6",
        channels: 1,
        classes: &["malignant", "normal_benign"],
        multi_label: false,
        samples: [546, 78, 156],
        license: "CC BY 4.0",
    },
    MedMnist {
        flag: "bloodmnist",
        md5: "7053d0359d879ad8a5505303e11de1dc",
        channels: 3,
        classes: &[
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature_granulocytes",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ],
        multi_label: false,
        samples: [11959, 1712, 3421],
        license: "CC BY 4.0",
    },
    MedMnist {
        flag: "tissuemnist",
        md5: "ebe78ee8b05294063de985d821c1c34b",
        channels: 1,
        classes: &[
            "collecting_duct_connecting_tubule",
            "distal_convoluted_tubule",
            "glomerular_endothelial_cells",
            "interstitial_endothelial_cells",
            "leukocytes",
            "podocytes",
            "proximal_tubule_segments",
            "thick_ascending_limb",
        ],
        multi_label: false,
        samples: [165466, 23640, 47280],
        license: "CC BY 3.0",
    },
    MedMnist {
        flag: "organamnist",
        md5: "866b832ed4eeba67bfb9edee1d5544e6",
        channels: 1,
        classes: ORGANS,
        multi_label: false,
        samples: [34581, 6491, 17778],
        license: "CC BY 4.0",
    },
    MedMnist {
        flag: "organcmnist",
        md5: "0afa5834fb105f7705a7d93372119a21",
        channels: 1,
        classes: ORGANS,
        multi_label: false,
        samples: [13000, 2392, 8268],
        license: "CC BY 4.0",
    },
    MedMnist {
        flag: "organsmnist",
        md5: "e5c39f1af030238290b9557d9503af9d",
        channels: 1,
        classes: ORGANS,
        multi_label: false,
        samples: [13940, 2452, 8829],
        license: "CC BY 4.0",
    },
];

/// The set named `flag` (case-insensitive), if MedMNIST has it.
pub fn find(flag: &str) -> Option<&'static MedMnist> {
    SETS.iter().find(|s| s.flag.eq_ignore_ascii_case(flag))
}

/// The set named `flag`, or an error that names the known ones.
pub fn lookup(flag: &str) -> Result<&'static MedMnist> {
    find(flag).ok_or_else(|| {
        let all: Vec<&str> = SETS.iter().map(|s| s.flag).collect();
        Error::Invalid(format!(
            "unknown MedMNIST set `{flag}`; the 2D sets are: {}",
            all.join(", ")
        ))
    })
}

/// The sets with their classes, colour, split sizes and licenses (`data fetch --list`).
pub fn table() -> String {
    let rows: Vec<Vec<String>> = SETS
        .iter()
        .map(|s| {
            vec![
                s.flag.to_string(),
                s.classes.len().to_string(),
                if s.channels == 1 { "gray" } else { "colour" }.to_string(),
                format!("{} / {} / {}", s.samples[0], s.samples[1], s.samples[2]),
                if s.multi_label { "multi-label" } else { "" }.to_string(),
                s.license.to_string(),
            ]
        })
        .collect();
    crate::io::table(
        &[
            "set",
            "classes",
            "colour",
            "train / val / test",
            "",
            "license",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_consistent() {
        for s in SETS {
            assert_eq!(s.md5.len(), 32, "{}", s.flag);
            assert!(s.md5.chars().all(|c| c.is_ascii_hexdigit()), "{}", s.flag);
            assert!(s.classes.len() >= 2, "{}", s.flag);
            assert!(matches!(s.channels, 1 | 3), "{}", s.flag);
            assert!(
                s.classes
                    .iter()
                    .all(|c| c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')),
                "{}",
                s.flag
            );
        }
        assert_eq!(find("PneumoniaMNIST").unwrap().samples, [4708, 524, 624]);
        assert!(find("imagenet").is_none());
    }
}
