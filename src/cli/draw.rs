//! A grey image drawn in the terminal with Unicode shades: no colour escapes,
//! so the drawing survives pipes, files and terminals without colour.

/// From no ink to full ink.
const SHADES: [char; 5] = [' ', '░', '▒', '▓', '█'];

/// `pixels` (row-major, `width` > 0 wide, 0 = background) as lines of text,
/// each pixel two characters wide so the drawing keeps the image's proportions
/// (terminal cells are about twice as tall as wide).
pub fn shades(pixels: &[u8], width: usize) -> String {
    let mut out = String::new();
    for row in pixels.chunks(width) {
        for &p in row {
            let shade = SHADES[usize::from(p) * SHADES.len() / 256];
            out.push(shade);
            out.push(shade);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pixel_is_two_characters_shaded_by_intensity() {
        let pixels: Vec<u8> = (0..28 * 28).map(|i| (i % 256) as u8).collect();
        let drawing = shades(&pixels, 28);
        let lines: Vec<&str> = drawing.lines().collect();
        assert_eq!(lines.len(), 28);
        assert!(lines.iter().all(|l| l.chars().count() == 56));
        // Five equal bands of 0..=255.
        let edges = [0, 51, 52, 102, 103, 153, 154, 204, 205, 255];
        assert_eq!(shades(&edges, 5), "    ░░░░▒▒\n▒▒▓▓▓▓████\n");
    }
}
