//! The configs the Kubernetes manifests ship (`deploy/kubernetes`), read by the host's
//! own parser: a ConfigMap the host would refuse would crash-loop every pod.

use std::path::Path;

use plugrpc::HostConfig;

/// The `plugrpc.toml: |` block of a ConfigMap file, its indentation removed.
fn embedded_config(yaml: &str) -> String {
    let mut lines = yaml
        .lines()
        .skip_while(|line| !line.trim_end().ends_with("plugrpc.toml: |"));
    let key = lines.next().expect("a plugrpc.toml block");
    let key_indent = key.len() - key.trim_start().len();
    let block: Vec<&str> = lines
        .take_while(|line| {
            line.trim().is_empty() || line.len() - line.trim_start().len() > key_indent
        })
        .collect();
    let indent = block
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    block
        .iter()
        .map(|line| line.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_shipped_config_is_one_the_host_accepts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    for file in [
        "base/configmap.yaml",
        "overlays/single-tenant/configmap.yaml",
        "overlays/multi-tenant/configmap.yaml",
    ] {
        let yaml = std::fs::read_to_string(root.join(file)).unwrap();
        let toml = embedded_config(&yaml);
        assert!(
            toml.contains("[shutdown]"),
            "{file}: the block was not found:\n{toml}"
        );
        let config = HostConfig::from_toml(file, &toml)
            .unwrap_or_else(|error| panic!("{file}: the host refuses it: {error}"));
        assert!(
            !config.sources.is_empty(),
            "{file}: a fleet's plugins come from a registry"
        );
    }
}
