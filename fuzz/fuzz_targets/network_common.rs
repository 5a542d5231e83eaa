//! Shared body of the network fuzz targets (`network_data`, `network_config`): parse the input
//! (after one selector byte) into the network model, then render every backend. Parsing never
//! panics; whatever parses passes the model boundary (`check_grammar`) and renders for all five
//! backends (the PowerShell script for Windows included) without a refusal, deterministically,
//! each file starting with primer's header, inside the backend's own directory, every line one
//! line of its syntax (`check_lines`: no injected line can hide in a value).

use std::collections::BTreeMap;

use primer::net::naming::assign_names;
use primer::net::render::{check_lines, render, try_render, RenderOptions, HEADER};
use primer::net::{parse_network, Backend, InputFormat};

pub fn run(data: &[u8], format: InputFormat) {
    // The first byte varies the target (known MAC, resolv.conf); the rest is the input.
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok((config, report)) = parse_network(rest, format, "fuzz") else {
        return;
    };
    assert!(report.warnings.iter().all(|w| w.file == "fuzz"));
    // The model boundary: every value of a parsed model fits its grammar.
    assert_eq!(config.check_grammar(), Ok(()));
    let mut host = BTreeMap::new();
    if sel & 2 == 2 {
        if let Some(m) = config.links.iter().find_map(|l| l.mac.clone()) {
            host.insert(m, "eth0".to_string());
        }
    }
    let names = assign_names(&config, &host);
    let opts = RenderOptions {
        netplan_renderer: (sel & 8 == 8).then(|| "NetworkManager".to_string()),
        eni_resolv_conf: sel & 4 == 4,
    };
    for b in Backend::ALL {
        // What the parsers produce never trips the renderers' last check.
        let r = match try_render(b, &config, &names, &opts) {
            Ok(r) => r,
            Err(e) => panic!("{b}: a parsed model was refused: {e}"),
        };
        assert_eq!(r, render(b, &config, &names, &opts));
        for f in &r.files {
            assert!(f.content.starts_with(HEADER));
            assert_eq!(check_lines(&f.path, &f.content), Ok(()));
            // Inside the backend's own directory (or its one extra file), no `..` component.
            let o = primer::net::render::owned(b);
            assert!(
                f.path.starts_with(&format!("{}/", o.dir)) || o.extra.contains(&f.path.as_str())
            );
            assert!(!f
                .path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == ".."));
        }
    }
}
