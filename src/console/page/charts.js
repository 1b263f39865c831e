// Charts as horizontal bars: full names on the left (never cut short), the
// disclosed and refused counts as two bars with their numbers written after
// them and on hover, and beside each chart a table with the same numbers,
// which is also the chart's text alternative for screen readers.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs, text) {
  const e = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** One chart: rows of {label, disclosed, refused}. Returns a <figure>. */
function barChart(id, title, rows) {
  const fig = document.createElement("figure");
  fig.className = "chart";
  const cap = document.createElement("figcaption");
  cap.id = id + "-cap";
  cap.textContent = title;
  fig.appendChild(cap);
  if (!rows.length) {
    const p = document.createElement("p");
    p.textContent = t("chart.none");
    fig.appendChild(p);
    return fig;
  }
  const body = document.createElement("div");
  body.className = "chart-body";
  const labelW = Math.min(260, 12 + 7 * Math.max(...rows.map((r) => r.label.length)));
  const barW = 240, rowH = 30, w = labelW + barW + 70;
  const max = Math.max(1, ...rows.map((r) => Math.max(r.disclosed, r.refused)));
  const svg = svgEl("svg", {viewBox: `0 0 ${w} ${rows.length * rowH + 6}`, width: w, role: "img",
    "aria-label": t("chart.alt", {title})});
  rows.forEach((r, i) => {
    const y = i * rowH + 3;
    const g = svgEl("g", {});
    g.appendChild(svgEl("title", {}, `${r.label}: ${r.disclosed} ${t("d.disclosed")}, ${r.refused} ${t("d.refused")}`));
    g.appendChild(svgEl("text", {x: labelW - 6, y: y + 17, "text-anchor": "end", class: "lbl"}, r.label));
    const dw = (r.disclosed / max) * barW, rw = (r.refused / max) * barW;
    g.appendChild(svgEl("rect", {x: labelW, y: y + 2, width: Math.max(dw, 1), height: 11, class: "bar ok"}));
    g.appendChild(svgEl("text", {x: labelW + dw + 4, y: y + 12, class: "num"}, r.disclosed));
    g.appendChild(svgEl("rect", {x: labelW, y: y + 14, width: Math.max(rw, 1), height: 11, class: "bar bad"}));
    g.appendChild(svgEl("text", {x: labelW + rw + 4, y: y + 24, class: "num"}, r.refused));
    svg.appendChild(g);
  });
  body.appendChild(svg);
  const table = document.createElement("table");
  table.className = "chart-table";
  table.innerHTML = `<caption class="visually-hidden">${esc(title)}</caption><thead><tr><th scope="col">${esc(t("chart.key"))}</th>` +
    `<th scope="col" class="n">${esc(t("d.disclosed.pl"))}</th><th scope="col" class="n">${esc(t("d.refused.pl"))}</th></tr></thead><tbody>` +
    rows.map((r) => `<tr><th scope="row">${esc(r.label)}</th><td class="n">${r.disclosed}</td><td class="n">${r.refused}</td></tr>`).join("") +
    `</tbody>`;
  body.appendChild(table);
  fig.appendChild(body);
  return fig;
}
