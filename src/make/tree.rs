//! The file tree of each drive format, from a checked description: what nova, CloudStack,
//! cloud-init's NoCloud seed and the OVF transport put on their drives (FORMATS.md). Pure: the
//! only reads are the input files the description names; writes nothing.

use serde_json::{json, Map, Value};

use super::desc::{Data, Description, NetKind};
use super::{Content, DriveFormat, MakeError, Tree};

/// Every metadata version nova writes, oldest first (FORMATS.md §1), as the reader knows them;
/// `latest` is added where the tree is written.
pub use crate::source::openstack::KNOWN_VERSIONS as OPENSTACK_VERSIONS;

/// The EC2 metadata versions written with `--ec2` (nova's oldest and newest plus `latest`).
pub const EC2_VERSIONS: &[&str] = &["2009-04-04", "latest"];

/// Choices about the tree that the description does not make.
#[derive(Debug, Clone, Default)]
pub struct TreeOptions {
    /// OpenStack: also write the legacy `ec2/` view.
    pub ec2: bool,
    /// CloudStack: the underscore file names (`instance_id.txt`) instead of the hyphenated ones.
    pub cloudstack_underscores: bool,
}

/// Builds the tree of `format` (the description must have been validated).
pub fn build_tree(
    d: &Description,
    format: DriveFormat,
    opts: &TreeOptions,
) -> Result<Tree, MakeError> {
    match format {
        DriveFormat::OpenStack => openstack(d, opts),
        DriveFormat::CloudStack => cloudstack(d, opts),
        DriveFormat::NoCloud => nocloud(d),
        DriveFormat::Ovf => ovf(d),
    }
}

fn pretty(v: &Value) -> Vec<u8> {
    // serde_json's maps are sorted here (no preserve_order): reproducible output.
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// nova's `meta_data.json` for the instance.
fn meta_data(d: &Description, with_files: bool) -> Value {
    let mut m = Map::new();
    m.insert("uuid".into(), json!(d.instance_id));
    if let Some(h) = &d.hostname {
        m.insert("hostname".into(), json!(h));
    }
    if let Some(n) = d.name.as_ref().or(d.hostname.as_ref()) {
        m.insert("name".into(), json!(n));
    }
    let keys = d.named_keys();
    if !keys.is_empty() {
        // Maps built by insertion, not `collect` (its own copy of the sort: src/sort.rs).
        let mut pk = Map::new();
        pk.extend(keys.iter().map(|(n, k)| (n.clone(), json!(k))));
        m.insert("public_keys".into(), Value::Object(pk));
        let list: Vec<Value> = keys
            .iter()
            .map(|(n, k)| json!({"name": n, "type": "ssh", "data": k}))
            .collect();
        m.insert("keys".into(), Value::Array(list));
    }
    let mut meta = Map::new();
    meta.extend(d.meta.iter().map(|(k, v)| (k.clone(), json!(v))));
    if let Some(u) = &d.admin_username {
        meta.insert("admin_username".into(), json!(u));
    }
    m.insert("meta".into(), Value::Object(meta));
    // The compute driver's injected password (libvirt, Ironic) sits at the top level.
    if let Some(p) = &d.admin_pass {
        m.insert("admin_pass".into(), json!(p));
    }
    if let Some(az) = &d.availability_zone {
        m.insert("availability_zone".into(), json!(az));
    }
    m.insert("launch_index".into(), json!(0));
    if with_files && !d.files.is_empty() {
        let files: Vec<Value> = d
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| json!({"path": f.path, "content_path": format!("/content/{i:04}")}))
            .collect();
        m.insert("files".into(), Value::Array(files));
    }
    Value::Object(m)
}

/// nova's `vendor_data.json`: the given JSON object, or text wrapped as `{"cloud-init": ...}`.
fn vendor_json(d: &Description) -> Result<Vec<u8>, MakeError> {
    let Some(v) = &d.vendor_data else {
        return Ok(b"{}\n".to_vec());
    };
    let b = d.bytes_of("vendor_data", v)?;
    if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(&b) {
        return Ok(pretty(&Value::Object(o)));
    }
    let text = String::from_utf8(b).map_err(|_| {
        MakeError::field(
            &d.source,
            "vendor_data",
            "not UTF-8 (vendor_data.json carries text)",
        )
    })?;
    Ok(pretty(&json!({ "cloud-init": text })))
}

fn content(d: &Description, field: &str, data: &Data) -> Result<Content, MakeError> {
    Ok(match data {
        Data::File { file } => {
            let path = d.path_of(file);
            let size = std::fs::metadata(&path)
                .map_err(|e| {
                    MakeError::field(&d.source, field, format!("{}: {e}", path.display()))
                })?
                .len();
            Content::File { path, size }
        }
        other => Content::Bytes(d.bytes_of(field, other)?),
    })
}

fn openstack(d: &Description, opts: &TreeOptions) -> Result<Tree, MakeError> {
    let mut t = Tree::default();
    let md = pretty(&meta_data(d, true));
    let user = d
        .user_data
        .as_ref()
        .map(|u| content(d, "user_data", u))
        .transpose()?;
    let vendor = vendor_json(d)?;
    let network = match d.network_doc()? {
        Some((v, NetKind::NetworkData)) => pretty(&v),
        // nova writes `{}`-like content when it knows no network; an empty model is the same.
        _ => pretty(&json!({"links": [], "networks": [], "services": []})),
    };
    for v in OPENSTACK_VERSIONS.iter().copied().chain(["latest"]) {
        let at = |f: &str| format!("openstack/{v}/{f}");
        t.add(at("meta_data.json"), md.clone());
        if let Some(u) = &user {
            t.files.insert(at("user_data"), u.clone());
        }
        // Files appear with the version that introduced them (FORMATS.md §1).
        if v == "latest" || v >= "2013-10-17" {
            t.add(at("vendor_data.json"), vendor.clone());
        }
        if v == "latest" || v >= "2015-10-15" {
            t.add(at("network_data.json"), network.clone());
        }
        if v == "latest" || v >= "2016-10-06" {
            t.add(at("vendor_data2.json"), b"{}\n".to_vec());
        }
    }
    for (i, f) in d.files.iter().enumerate() {
        t.files.insert(
            format!("openstack/content/{i:04}"),
            content(d, &format!("files[{i}].content"), &f.content)?,
        );
    }
    if opts.ec2 {
        let mut m = Map::new();
        m.insert("instance-id".into(), json!(d.instance_id));
        if let Some(h) = &d.hostname {
            m.insert("hostname".into(), json!(h));
            m.insert("local-hostname".into(), json!(h));
        }
        if let Some(az) = &d.availability_zone {
            m.insert("placement".into(), json!({"availability-zone": az}));
        }
        let keys = d.named_keys();
        if !keys.is_empty() {
            let mut pk = Map::new();
            pk.extend(keys.iter().enumerate().map(|(i, (n, k))| {
                (
                    i.to_string(),
                    json!({"openssh-key": k, "_name": format!("{i}={n}")}),
                )
            }));
            m.insert("public-keys".into(), Value::Object(pk));
        }
        let ec2 = pretty(&Value::Object(m));
        for v in EC2_VERSIONS {
            t.add(format!("ec2/{v}/meta-data.json"), ec2.clone());
            if let Some(u) = &user {
                t.files.insert(format!("ec2/{v}/user-data"), u.clone());
            }
        }
    }
    Ok(t)
}

fn cloudstack(d: &Description, opts: &TreeOptions) -> Result<Tree, MakeError> {
    let mut t = Tree::default();
    let name = |n: &str| {
        if opts.cloudstack_underscores {
            n.replace('-', "_")
        } else {
            n.to_string()
        }
    };
    let mut meta = |n: &str, v: &str| {
        t.add(
            format!("cloudstack/metadata/{}.txt", name(n)),
            v.as_bytes().to_vec(),
        );
    };
    meta("instance-id", &d.instance_id);
    meta("vm-id", &d.instance_id);
    if let Some(h) = &d.hostname {
        meta("local-hostname", h);
        meta("public-hostname", h);
    }
    if let Some(az) = &d.availability_zone {
        meta("availability-zone", az);
    }
    let keys = d.key_lines();
    if !keys.is_empty() {
        meta("public-keys", &keys.join("\n"));
    }
    if let Some(n) = &d.name {
        meta("vm-name", n);
    }
    let user = d
        .user_data
        .as_ref()
        .map(|u| content(d, "user_data", u))
        .transpose()?;
    if let Some(u) = &user {
        t.files
            .insert("cloudstack/userdata/user_data.txt".into(), u.clone());
    }
    if let Some(p) = &d.admin_pass {
        t.add("cloudstack/password/vm_password.txt", p.as_bytes().to_vec());
        use md5::{Digest, Md5};
        let sum: String = Md5::digest(p.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        t.add(
            format!(
                "cloudstack/password/{}.txt",
                name("vm-password-md5checksum")
            ),
            sum.into_bytes(),
        );
    }
    // The OpenStack view CloudStack writes beside its own tree (no password in it: the
    // password file is CloudStack's channel).
    let mut md = meta_data(d, false);
    if let Some(o) = md.as_object_mut() {
        o.remove("admin_pass");
    }
    t.add("openstack/latest/meta_data.json", pretty(&md));
    t.add("openstack/latest/vendor_data.json", vendor_json(d)?);
    if let Some((v, _)) = d.network_doc()? {
        t.add("openstack/latest/network_data.json", pretty(&v));
    }
    if let Some(u) = user {
        t.files.insert("openstack/latest/user_data".into(), u);
    }
    Ok(t)
}

/// A YAML scalar written as a JSON string: valid YAML, any character escaped.
fn yq(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn nocloud(d: &Description) -> Result<Tree, MakeError> {
    let mut t = Tree::default();
    let mut md = format!("instance-id: {}\n", yq(&d.instance_id));
    if let Some(h) = &d.hostname {
        md.push_str(&format!("local-hostname: {}\n", yq(h)));
    }
    if let Some(az) = &d.availability_zone {
        md.push_str(&format!("availability-zone: {}\n", yq(az)));
    }
    let keys = d.key_lines();
    if !keys.is_empty() {
        md.push_str("public-keys:\n");
        for k in &keys {
            md.push_str(&format!("  - {}\n", yq(k)));
        }
    }
    t.add("meta-data", md.into_bytes());
    // cloud-init reads a seed without user-data as broken: an empty file says "none".
    match &d.user_data {
        Some(u) => {
            t.files
                .insert("user-data".into(), content(d, "user_data", u)?);
        }
        None => t.add("user-data", Vec::new()),
    }
    if let Some(v) = &d.vendor_data {
        t.files
            .insert("vendor-data".into(), content(d, "vendor_data", v)?);
    }
    if let Some((v, _)) = d.network_doc()? {
        t.add("network-config", pretty(&v));
    }
    Ok(t)
}

/// XML attribute value: `&`, `<`, `"` and every control character as references.
fn xml_attr(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            c if (c as u32) < 0x20 => o.push_str(&format!("&#{};", c as u32)),
            c => o.push(c),
        }
    }
    o
}

fn ovf(d: &Description) -> Result<Tree, MakeError> {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut props: Vec<(String, String)> = vec![("instance-id".into(), d.instance_id.clone())];
    if let Some(h) = &d.hostname {
        props.push(("hostname".into(), h.clone()));
        props.push(("local-hostname".into(), h.clone()));
    }
    for k in d.key_lines() {
        props.push(("public-keys".into(), k));
    }
    if let Some(u) = &d.user_data {
        props.push(("user-data".into(), b64(&d.bytes_of("user_data", u)?)));
    }
    if let Some(p) = &d.admin_pass {
        props.push(("password".into(), p.clone()));
    }
    if let Some(u) = &d.admin_username {
        props.push(("username".into(), u.clone()));
    }
    if let Some((v, _)) = d.network_doc()? {
        props.push(("network-config".into(), b64(&pretty(&v))));
    }
    for (k, v) in &d.meta {
        props.push((k.clone(), v.clone()));
    }
    // DSP0243: the environment namespace as default and as the `oe` prefix of the attributes.
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Environment xmlns=\"http://schemas.dmtf.org/ovf/environment/1\" \
         xmlns:oe=\"http://schemas.dmtf.org/ovf/environment/1\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n  <PropertySection>\n",
    );
    for (k, v) in &props {
        x.push_str(&format!(
            "    <Property oe:key=\"{}\" oe:value=\"{}\"/>\n",
            xml_attr(k),
            xml_attr(v)
        ));
    }
    x.push_str("  </PropertySection>\n</Environment>\n");
    let mut t = Tree::default();
    t.add("ovf-env.xml", x.into_bytes());
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_attributes_escape_markup_and_controls() {
        assert_eq!(xml_attr("a&b<\"c\"\n"), "a&amp;b&lt;&quot;c&quot;&#10;");
    }

    #[test]
    fn openstack_versions_carry_the_files_of_their_time() {
        let d = Description {
            instance_id: "i".into(),
            source: "d".into(),
            ..Default::default()
        };
        let t = openstack(&d, &TreeOptions::default()).expect("tree");
        assert!(t.files.contains_key("openstack/2012-08-10/meta_data.json"));
        assert!(!t
            .files
            .contains_key("openstack/2012-08-10/vendor_data.json"));
        assert!(t
            .files
            .contains_key("openstack/2013-10-17/vendor_data.json"));
        assert!(!t
            .files
            .contains_key("openstack/2013-10-17/network_data.json"));
        assert!(t.files.contains_key("openstack/latest/vendor_data2.json"));
        assert!(!t.files.keys().any(|k| k.starts_with("ec2/")));
    }
}
