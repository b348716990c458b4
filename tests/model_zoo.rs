//! The model zoo against torchvision: parameter counts after replacing the last layer for 4
//! classes (the thesis' Table 4.1), and every state-dict name and shape, read from the
//! virtualenv's torchvision (skipped with a printed reason when it is not importable).

mod common;

use fedsentry::models::{Arch, Net};
use std::collections::BTreeMap;
use tch::Device;

const ZOO: &[(Arch, &str, i64)] = &[
    (Arch::Alexnet, "alexnet", 57_020_228),
    (Arch::Densenet121, "densenet121", 6_957_956),
    (Arch::EfficientNetB0, "efficientnet_b0", 4_012_672),
    (Arch::MobileNetV2, "mobilenet_v2", 2_228_996),
    (Arch::MobileNetV3Small, "mobilenet_v3_small", 1_521_956),
    (Arch::Resnet18, "resnet18", 11_178_564),
    (Arch::Vgg16, "vgg16", 134_276_932),
    (Arch::Vgg19, "vgg19", 139_586_628),
];

#[test]
fn parameter_counts_match_table_4_1() {
    for &(arch, name, count) in ZOO {
        let net = Net::new(arch, 4, 3, 64, Device::Cpu).unwrap();
        assert_eq!(net.num_parameters(), count, "{name}");
    }
}

/// name → shape of torchvision's state dict for a 4-class model, or None without torchvision.
fn torchvision_state(model: &str) -> Option<BTreeMap<String, Vec<i64>>> {
    let python = common::torchvision_python()?;
    let script = format!(
        "import json, torchvision.models as m\n\
         sd = m.{model}(weights=None, num_classes=4).state_dict()\n\
         print(json.dumps({{k: list(v.shape) for k, v in sd.items() if not k.endswith('num_batches_tracked')}}))"
    );
    let out = common::run_python(&python, &script, &[]);
    Some(serde_json::from_slice(&out).expect("a JSON object"))
}

#[test]
fn names_and_shapes_match_torchvision() {
    for &(arch, name, _) in ZOO {
        let Some(want) = torchvision_state(name) else {
            return;
        };
        let net = Net::new(arch, 4, 3, 64, Device::Cpu).unwrap();
        let got: BTreeMap<String, Vec<i64>> = net
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.size()))
            .collect();
        let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: missing {missing:?}, unexpected {extra:?}"
        );
        for (k, shape) in &want {
            assert_eq!(&got[k], shape, "{name}: shape of {k}");
        }
    }
}
