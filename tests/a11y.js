// Run by tests/a11y.py inside the page: returns a list of problems.
(targets) => {
  const problems = [];
  const rgba = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => {  // `top` (with alpha) composited over opaque `under`
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a));
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  // the canvas Chromium paints under everything: dark when the page opts in to dark
  const meta = document.querySelector('meta[name="color-scheme"]');
  const dark = matchMedia('(prefers-color-scheme: dark)').matches &&
    ((meta && meta.content.includes('dark')) ||
     getComputedStyle(document.documentElement).colorScheme.includes('dark'));
  const canvas = dark ? [18, 18, 18] : [255, 255, 255];
  const background = (el) => {
    const chain = [];
    for (let e = el; e; e = e.parentElement) chain.unshift(e);
    let color = canvas;
    for (const e of chain) {
      const bg = rgba(getComputedStyle(e).backgroundColor);
      if (bg[3] > 0) color = over(bg, color);
    }
    return color;
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let checked = 0;
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.textContent.trim()) continue;
    const el = node.parentElement;
    const style = getComputedStyle(el);
    if (!el.getClientRects().length || style.visibility === 'hidden' || style.opacity === '0') continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const box = range.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    const bg = background(el);
    const fg = over(rgba(style.color), bg);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (parseInt(style.fontWeight) >= 700 && size >= 18.66);
    const need = large ? 3 : 4.5;
    const r = ratio(fg, bg);
    checked++;
    if (r < need) problems.push(`contrast ${r.toFixed(2)} < ${need}: "${node.textContent.trim().slice(0, 40)}" ` +
                                `${style.color} on rgb(${bg.map(Math.round)})`);
  }
  if (!checked) problems.push('no visible text');
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > width)
    problems.push(`horizontal overflow: ${document.documentElement.scrollWidth} > ${width}`);
  if (targets) {
    for (const el of document.querySelectorAll(targets)) {
      const h = el.getBoundingClientRect().height;
      if (el.getClientRects().length && h < 44)
        problems.push(`target ${h.toFixed(0)} px tall: "${el.textContent.trim().slice(0, 30)}"`);
    }
  }
  return problems;
}
