//! PNG copies of the SVG figures, for slides and papers: every `<name>.svg` under a run's
//! folder gets a `<name>.png` beside it, rendered at twice the SVG's size with the system's
//! sans-serif font (DejaVu, Liberation, Noto or Arial, whichever is installed).

use crate::error::{Error, Result};
use resvg::{tiny_skia, usvg};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

/// Pixels per SVG unit: a 900-unit-wide figure becomes 1,800 pixels.
pub const SCALE: f32 = 2.0;

/// The system fonts, loaded once; the figures ask for the generic `sans-serif`, which fontdb
/// would otherwise map to Arial only.
static FONTS: LazyLock<Arc<usvg::fontdb::Database>> = LazyLock::new(|| {
    let mut db = usvg::fontdb::Database::new();
    db.load_system_fonts();
    let families: Vec<String> = db
        .faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
        .collect();
    let preferred = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial"];
    if let Some(name) = preferred
        .iter()
        .find(|p| families.iter().any(|f| f == *p))
        .map(|s| s.to_string())
        .or_else(|| families.first().cloned())
    {
        db.set_sans_serif_family(name);
    }
    Arc::new(db)
});

/// Whether any font was found (without one the PNGs have no text).
pub fn have_fonts() -> bool {
    !FONTS.is_empty()
}

/// Renders `svg` to PNG bytes at [`SCALE`].
pub fn svg_to_png(svg: &[u8], origin: &Path) -> Result<Vec<u8>> {
    let opt = usvg::Options {
        fontdb: FONTS.clone(),
        font_family: FONTS
            .family_name(&usvg::fontdb::Family::SansSerif)
            .to_string(),
        ..Default::default()
    };
    let tree = usvg::Tree::from_data(svg, &opt)
        .map_err(|e| Error::data(origin, format!("not a readable SVG: {e}")))?;
    let size = tree.size().to_int_size();
    let (w, h) = (
        (size.width() as f32 * SCALE).round() as u32,
        (size.height() as f32 * SCALE).round() as u32,
    );
    let mut pixmap = tiny_skia::Pixmap::new(w, h)
        .ok_or_else(|| Error::data(origin, format!("cannot render a {w}×{h} image")))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(SCALE, SCALE),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| Error::data(origin, format!("cannot encode PNG: {e}")))
}

/// Writes `<name>.png` beside `svg` (atomically).
pub fn write_png(svg: &Path) -> Result<PathBuf> {
    let data = std::fs::read(svg).map_err(|e| Error::io(svg, e))?;
    let png = svg.with_extension("png");
    crate::io::write_atomic(&png, &svg_to_png(&data, svg)?)?;
    Ok(png)
}

/// Every SVG under `dir` whose PNG is missing or older than it; returns the PNGs written.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for svg in crate::io::files_with_extension(dir, "svg")? {
        if crate::io::is_stale(&svg.with_extension("png"), &svg) {
            written.push(write_png(&svg)?);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_figure_at_twice_its_size_with_its_text() {
        let dir = std::env::temp_dir().join(format!("fedsentry-png-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("cell")).unwrap();
        let svg = dir.join("cell/fig.svg");
        let plain = r##"<svg width="120" height="40" viewBox="0 0 120 40" xmlns="http://www.w3.org/2000/svg"><rect x="0" y="0" width="60" height="40" fill="#FF0000"/></svg>"##;
        std::fs::write(&svg, plain).unwrap();
        assert_eq!(write_all(&dir).unwrap(), vec![dir.join("cell/fig.png")]);
        let img = image::open(dir.join("cell/fig.png")).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (240, 80));
        assert_eq!(img.get_pixel(10, 10).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(200, 10).0, [255, 255, 255]);
        // Up to date: nothing to do.
        assert!(write_all(&dir).unwrap().is_empty());
        if have_fonts() {
            // Text in the generic family the figures use leaves dark pixels.
            let text = r##"<svg width="120" height="40" xmlns="http://www.w3.org/2000/svg"><text x="5" y="30" font-family="sans-serif" font-size="24" fill="#000000">ASR</text></svg>"##;
            let png = svg_to_png(text.as_bytes(), &svg).unwrap();
            let img = image::load_from_memory(&png).unwrap().to_luma8();
            assert!(img.pixels().any(|p| p.0[0] < 64), "the text was not drawn");
        }
        let bad = svg_to_png(b"<svg", &svg).unwrap_err().to_string();
        assert!(bad.contains("fig.svg") && bad.contains("SVG"), "{bad}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
