//! Containers around a made filesystem image: Ironic's packed form (gzip, then base64: what
//! nova hands Ironic in `configdrive`) and a trailing partition inside an existing disk image as
//! Ironic writes it. Writes only the output file or disk image it is given.

use std::io::{Read, Write};

use super::MakeError;

/// gzip (no file name, time 0: reproducible) then base64 (standard alphabet, no line breaks, as
/// Ironic's `base64.b64encode`), streamed from `input` to `out`.
pub fn pack(mut input: impl Read, out: impl Write) -> Result<(), MakeError> {
    use base64::engine::general_purpose::STANDARD;
    let enc = base64::write::EncoderWriter::new(out, &STANDARD);
    // GzEncoder writes a header with mtime 0 and no name: byte-identical output.
    let mut gz = flate2::write::GzEncoder::new(enc, flate2::Compression::default());
    std::io::copy(&mut input, &mut gz).map_err(|e| MakeError::io("packed output", e))?;
    let mut enc = gz.finish().map_err(|e| MakeError::io("packed output", e))?;
    enc.flush().map_err(|e| MakeError::io("packed output", e))?;
    let mut out = enc
        .finish()
        .map_err(|e| MakeError::io("packed output", e))?;
    out.flush().map_err(|e| MakeError::io("packed output", e))?;
    Ok(())
}

/// Runs `f` on a writer that packs what it is given into `out` (see [`pack`]).
pub fn pack_with(
    out: &mut dyn Write,
    f: impl FnOnce(&mut dyn Write) -> Result<(), MakeError>,
) -> Result<(), MakeError> {
    use base64::engine::general_purpose::STANDARD;
    let enc = base64::write::EncoderWriter::new(out, &STANDARD);
    let mut gz = flate2::write::GzEncoder::new(enc, flate2::Compression::default());
    f(&mut gz)?;
    let mut enc = gz.finish().map_err(|e| MakeError::io("packed output", e))?;
    enc.flush().map_err(|e| MakeError::io("packed output", e))?;
    let out = enc
        .finish()
        .map_err(|e| MakeError::io("packed output", e))?;
    out.flush().map_err(|e| MakeError::io("packed output", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_form_is_gzip_then_base64_and_reproducible() {
        let data = b"config drive bytes".repeat(100);
        let mut a = Vec::new();
        pack(&data[..], &mut a).expect("pack");
        let mut b = Vec::new();
        pack(&data[..], &mut b).expect("pack");
        assert_eq!(a, b);
        use base64::Engine;
        let gz = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .expect("base64");
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, data);
    }
}
