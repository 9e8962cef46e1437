// Text widths for vega when it renders without a canvas (as here, headless): vega's own estimate is
// 0.8 em for every character, which truncates axis labels early and pads the charts. These are the
// advance widths of Helvetica (Arial and Liberation Sans share them), in thousandths of an em, for
// the printable ASCII characters; anything else counts as 0.6 em.
const ASCII_WIDTHS = [
  278,
  278,
  355,
  556,
  556,
  889,
  667,
  191,
  333,
  333,
  389,
  584,
  278,
  333,
  278,
  278, // space to /
  556,
  556,
  556,
  556,
  556,
  556,
  556,
  556,
  556,
  556,
  278,
  278,
  584,
  584,
  584,
  556, // 0 to ?
  1015,
  667,
  667,
  722,
  722,
  667,
  611,
  778,
  722,
  278,
  500,
  667,
  556,
  833,
  722,
  778, // @ to O
  667,
  778,
  722,
  667,
  611,
  722,
  667,
  944,
  667,
  667,
  611,
  278,
  278,
  278,
  469,
  556, // P to _
  333,
  556,
  556,
  500,
  556,
  556,
  278,
  556,
  556,
  222,
  222,
  500,
  222,
  833,
  556,
  556, // ` to o
  556,
  556,
  333,
  500,
  278,
  556,
  500,
  722,
  500,
  500,
  500,
  334,
  260,
  334,
  584, // p to ~
];

/** Width in px of `text` at `fontSize` px in Helvetica; bold is about 6% wider. */
export function helveticaWidth(text, fontSize, bold = false) {
  let units = 0;
  for (const ch of String(text)) {
    const code = ch.codePointAt(0);
    units += code >= 32 && code <= 126 ? ASCII_WIDTHS[code - 32] : 600;
  }
  return (units / 1000) * fontSize * (bold ? 1.06 : 1);
}

/** Makes vega measure text with helveticaWidth (its hook for renderers without a canvas). */
export function useHelveticaMetrics(vega) {
  vega.textMetrics.width = (item, text) => {
    const value = text ?? item.text ?? '';
    const weight = item.fontWeight;
    const bold = weight === 'bold' || (typeof weight === 'number' && weight >= 600);
    return helveticaWidth(Array.isArray(value) ? value.join(' ') : value, item.fontSize ?? 11, bold);
  };
}
