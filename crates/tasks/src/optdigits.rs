//! The embedded optdigits data (UCI, CC BY 4.0; see `data/optdigits/README.md`).

use rnnlab_core::{Error, Result};

/// The decompressed `digits.csv.gz` (1,797 rows: 64 pixels 0..=16, then the label 0..=9).
const CSV: &str = include_str!("../data/optdigits/digits.csv");

/// Rows in the embedded file.
pub(crate) const N_ROWS: usize = 1_797;
/// Pixels per image (8×8, row by row, top-left first).
pub(crate) const N_PIXELS: usize = 64;
/// Largest pixel value.
pub(crate) const MAX_PIXEL: u8 = 16;

/// Images and labels, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OptDigits {
    pub(crate) pixels: Vec<[u8; N_PIXELS]>,
    pub(crate) labels: Vec<u8>,
}

/// Parses the embedded file, checking its row count.
pub(crate) fn load() -> Result<OptDigits> {
    let d = parse(CSV)?;
    if d.labels.len() != N_ROWS {
        return Err(Error::format("optdigits", format!("expected {N_ROWS} rows, got {}", d.labels.len())));
    }
    Ok(d)
}

/// Parses rows of 64 pixels in 0..=16 and a label in 0..=9, comma-separated.
pub(crate) fn parse(csv: &str) -> Result<OptDigits> {
    const OP: &str = "optdigits";
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (r, line) in csv.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.trim().split(',').collect();
        if fields.len() != N_PIXELS + 1 {
            return Err(Error::format(OP, format!("row {r}: expected 65 columns, got {}", fields.len())));
        }
        let mut img = [0u8; N_PIXELS];
        for (p, f) in fields[..N_PIXELS].iter().enumerate() {
            let v: u8 = f.parse().map_err(|_| Error::format(OP, format!("row {r} column {p}: not a pixel: {f:?}")))?;
            if v > MAX_PIXEL {
                return Err(Error::format(OP, format!("row {r} column {p}: pixel {v} > {MAX_PIXEL}")));
            }
            img[p] = v;
        }
        let l: u8 = fields[N_PIXELS]
            .parse()
            .map_err(|_| Error::format(OP, format!("row {r}: not a label: {:?}", fields[N_PIXELS])))?;
        if l > 9 {
            return Err(Error::format(OP, format!("row {r}: label {l} > 9")));
        }
        pixels.push(img);
        labels.push(l);
    }
    Ok(OptDigits { pixels, labels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_is_intact() {
        let d = load().unwrap();
        assert_eq!(d.pixels.len(), N_ROWS);
        assert_eq!(d.labels.len(), N_ROWS);
        assert_eq!(CSV.len(), 264_712);
        assert!(CSV.lines().all(|l| l.split(',').count() == 65));
        // checksums recorded in data/optdigits/README.md when the file was decompressed
        let pixel_sum: u64 = d.pixels.iter().flat_map(|p| p.iter()).map(|&v| u64::from(v)).sum();
        assert_eq!(pixel_sum, 561_718);
        let mut counts = [0usize; 10];
        for &l in &d.labels {
            counts[usize::from(l)] += 1;
        }
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        assert!(d.pixels.iter().flat_map(|p| p.iter()).all(|&v| v <= MAX_PIXEL));
        assert_eq!(d.pixels.iter().flat_map(|p| p.iter()).copied().max(), Some(16));
        // first row, as printed by `head -1`
        assert_eq!(&d.pixels[0][..8], &[0, 0, 5, 13, 9, 1, 0, 0]);
        assert_eq!(d.labels[0], 0);
        assert_eq!(d.labels[N_ROWS - 1], 8);
    }

    #[test]
    fn parse_rejects_wrong_column_count() {
        assert!(parse("1,2,3\n").is_err());
    }

    #[test]
    fn parse_rejects_bad_pixels_and_labels() {
        let row = |px: &str, label: &str| format!("{}{px},{label}\n", "0,".repeat(63));
        assert!(parse(&row("0", "3")).is_ok());
        assert!(parse(&row("17", "3")).is_err());
        assert!(parse(&row("x", "3")).is_err());
        assert!(parse(&row("0", "10")).is_err());
        assert!(parse(&row("0", "-1")).is_err());
    }
}
