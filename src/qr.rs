//! QR codes of short URLs (API 0.2, `GET /api/links/{id}/qr`), rendered in-process: the
//! symbol by `qrcodegen` (Project Nayuki's reference encoder), the image as SVG text or as a
//! 1-bit PNG (`png`). Pure and bounded: at most 2048 × 2048 pixels, 512 KiB of raw bits.

use qrcodegen::{QrCode, QrCodeEcc};

/// Light modules around the symbol, as the standard asks.
const QUIET_ZONE: i32 = 4;
pub const MIN_SIZE: u32 = 64;
pub const MAX_SIZE: u32 = 2048;
pub const DEFAULT_SIZE: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "png" => Some(Self::Png),
            "svg" => Some(Self::Svg),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Svg => "image/svg+xml",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("the URL is too long for a QR code")]
    TooLong,
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

/// `text` as a QR code image `size` pixels wide and high (quiet zone included), error
/// correction level M (15 % of the symbol may be damaged).
pub fn render(text: &str, format: Format, size: u32) -> Result<Vec<u8>, QrError> {
    let code = QrCode::encode_text(text, QrCodeEcc::Medium).map_err(|_| QrError::TooLong)?;
    let size = size.clamp(MIN_SIZE, MAX_SIZE);
    match format {
        Format::Svg => Ok(svg(&code, size).into_bytes()),
        Format::Png => png(&code, size),
    }
}

/// One path of unit squares in module coordinates, scaled by the `viewBox`. Edges are crisp
/// (snapped to pixels, no seams between squares) from [`MIN_CRISP_PITCH`] pixels a module;
/// below, snapping makes modules of uneven width again, and librsvg's rendering of 64 px
/// codes with it was unreadable for zbar (10 of 10 tried), without it readable (300 of 300,
/// 64–200 px).
fn svg(code: &QrCode, size: u32) -> String {
    let n = code.size();
    let total = n + 2 * QUIET_ZONE;
    let edges = if u64::from(size) >= MIN_CRISP_PITCH * total as u64 {
        " shape-rendering=\"crispEdges\""
    } else {
        ""
    };
    let mut path = String::new();
    for y in 0..n {
        for x in 0..n {
            if code.get_module(x, y) {
                if !path.is_empty() {
                    path.push(' ');
                }
                path.push_str(&format!("M{},{}h1v1h-1z", x + QUIET_ZONE, y + QUIET_ZONE));
            }
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{size}\" height=\"{size}\" \
         viewBox=\"0 0 {total} {total}\"{edges}>\
         <rect width=\"{total}\" height=\"{total}\" fill=\"#ffffff\"/>\
         <path d=\"{path}\" fill=\"#000000\"/></svg>\n"
    )
}

/// Pixels per module from which a PNG is drawn in black and white (and an SVG asks for crisp
/// edges); below, in gray.
///
/// A 1-bit image whose size is not a multiple of the modules has modules one pixel apart in
/// width, which is nothing at 7 px a module and a lot at 1.7 (64 px, a 29-module symbol):
/// there zbar decoded 562 of 600 random short URLs (CI failed on one). Drawn with each
/// pixel's share of dark module area, as a browser scales a larger image down, it decoded
/// all 600, and every size from 64 to 111 px.
const MIN_CRISP_PITCH: u64 = 3;

fn png(code: &QrCode, size: u32) -> Result<Vec<u8>, QrError> {
    let total = (code.size() + 2 * QUIET_ZONE) as u64;
    if u64::from(size) >= MIN_CRISP_PITCH * total {
        png_crisp(code, size)
    } else {
        png_smooth(code, size)
    }
}

/// An 8-bit grayscale PNG: each pixel as dark as the share of it that dark modules cover.
/// Small by construction (below [`MIN_CRISP_PITCH`] pixels a module).
fn png_smooth(code: &QrCode, size: u32) -> Result<Vec<u8>, QrError> {
    let n = code.size();
    let total = f64::from(n + 2 * QUIET_ZONE);
    // For each pixel along an axis, the symbol's modules it overlaps and how much of the
    // pixel each covers (the same along both axes: the image is square).
    let spans: Vec<Vec<(i32, f64)>> = (0..size)
        .map(|p| {
            let from = f64::from(p) * total / f64::from(size);
            let to = f64::from(p + 1) * total / f64::from(size);
            let mut covered = Vec::new();
            let mut m = from.floor();
            while m < to {
                let share = (to.min(m + 1.0) - from.max(m)) / (to - from);
                let module = m as i32 - QUIET_ZONE;
                if share > 0.0 && (0..n).contains(&module) {
                    covered.push((module, share));
                }
                m += 1.0;
            }
            covered
        })
        .collect();
    let mut raw = vec![0xffu8; size as usize * size as usize];
    for (py, rows) in spans.iter().enumerate() {
        let line = &mut raw[py * size as usize..(py + 1) * size as usize];
        for (pixel, columns) in line.iter_mut().zip(&spans) {
            let mut dark = 0.0;
            for &(my, wy) in rows {
                for &(mx, wx) in columns {
                    if code.get_module(mx, my) {
                        dark += wx * wy;
                    }
                }
            }
            *pixel = (255.0 * (1.0 - dark)).round().clamp(0.0, 255.0) as u8;
        }
    }
    encode_png(&raw, size, ::png::BitDepth::Eight)
}

/// A 1-bit grayscale PNG: each pixel takes the module under its centre, so any size works
/// (modules differ by at most one pixel when the size is not a multiple).
fn png_crisp(code: &QrCode, size: u32) -> Result<Vec<u8>, QrError> {
    let n = code.size();
    let total = (n + 2 * QUIET_ZONE) as u64;
    let module_at =
        |px: u32| -> i32 { ((2 * px as u64 + 1) * total / (2 * size as u64)) as i32 - QUIET_ZONE };
    let stride = size.div_ceil(8) as usize;
    let mut raw = vec![0xffu8; stride * size as usize];
    let columns: Vec<i32> = (0..size).map(module_at).collect();
    for py in 0..size {
        let my = module_at(py);
        if !(0..n).contains(&my) {
            continue;
        }
        let row = &mut raw[py as usize * stride..(py as usize + 1) * stride];
        for (px, &mx) in columns.iter().enumerate() {
            if (0..n).contains(&mx) && code.get_module(mx, my) {
                row[px / 8] &= !(0x80 >> (px % 8));
            }
        }
    }
    encode_png(&raw, size, ::png::BitDepth::One)
}

/// A square grayscale PNG of `raw` rows.
fn encode_png(raw: &[u8], size: u32, depth: ::png::BitDepth) -> Result<Vec<u8>, QrError> {
    let mut out = Vec::with_capacity(raw.len() / 4 + 128);
    let mut encoder = ::png::Encoder::new(&mut out, size, size);
    encoder.set_color(::png::ColorType::Grayscale);
    encoder.set_depth(depth);
    let mut writer = encoder
        .write_header()
        .map_err(|e| QrError::Png(e.to_string()))?;
    writer
        .write_image_data(raw)
        .map_err(|e| QrError::Png(e.to_string()))?;
    writer.finish().map_err(|e| QrError::Png(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_the_requested_size_and_a_white_quiet_zone() {
        for size in [MIN_SIZE, 100, DEFAULT_SIZE, 1000, MAX_SIZE] {
            let bytes = render("https://bl.example/aB3_x9Qz", Format::Png, size).expect("png");
            let decoder = ::png::Decoder::new(std::io::Cursor::new(bytes));
            let mut reader = decoder.read_info().expect("header");
            let info = reader.info();
            assert_eq!((info.width, info.height), (size, size));
            let mut buf = vec![0; reader.output_buffer_size()];
            let frame = reader.next_frame(&mut buf).expect("frame");
            // The first row is quiet zone: all white.
            assert!(
                buf[..frame.line_size].iter().all(|b| *b == 0xff),
                "size {size}"
            );
            assert!(
                buf.iter().any(|b| *b != 0xff),
                "some dark modules at size {size}"
            );
        }
    }

    #[test]
    fn svg_is_a_sized_document_with_a_path() {
        let svg = String::from_utf8(render("https://bl.example/x", Format::Svg, 300).expect("svg"))
            .expect("utf-8");
        assert!(svg.contains("width=\"300\" height=\"300\""));
        assert!(svg.contains("<path d=\"M"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn formats_are_png_and_svg_only() {
        assert_eq!(Format::parse("png"), Some(Format::Png));
        assert_eq!(Format::parse("svg"), Some(Format::Svg));
        assert_eq!(Format::parse("PNG"), None);
        assert_eq!(Format::parse("jpeg"), None);
    }
}
