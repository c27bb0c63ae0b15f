"use strict";
// The optional base map under the board's and the wall view's SVG map: tiles from the
// district's own GIS (XYZ, or WMTS in web mercator or longitude/latitude), as configured
// on the gateway (/api/basemap; gateway/basemap.py).  A map view is {x(lon), y(lat),
// bbox: [w, s, e, n]} in SVG units; each tile is an <image> over its own corners, so the
// tiles line up with the grid cells drawn above them.

const GridlinkBaseMap = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const MAX_TILES = 80;
  let config = null;

  async function load() {
    if (config) return config;
    try {
      const resp = await fetch("/api/basemap", { credentials: "same-origin" });
      config = resp.ok ? await resp.json() : { url: null };
    } catch (err) {
      config = { url: null };
    }
    return config;
  }

  // tile column / row holding a point, and a tile's corners, per matrix set
  const MATRIX = {
    webmercator: {
      col: (lon, z) => Math.floor((lon + 180) / 360 * 2 ** z),
      row: (lat, z) => {
        const r = lat * Math.PI / 180;
        return Math.floor((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2 * 2 ** z);
      },
      lon: (col, z) => col / 2 ** z * 360 - 180,
      lat: (row, z) => Math.atan(Math.sinh(Math.PI * (1 - 2 * row / 2 ** z))) * 180 / Math.PI,
    },
    geographic: {  // level z: 2^z columns and 2^(z-1) rows of 360/2^z degrees
      col: (lon, z) => Math.floor((lon + 180) / (360 / 2 ** z)),
      row: (lat, z) => Math.floor((90 - lat) / (360 / 2 ** z)),
      lon: (col, z) => col * (360 / 2 ** z) - 180,
      lat: (row, z) => 90 - row * (360 / 2 ** z),
    },
  };

  function tileUrl(template, z, col, row) {
    return template.replaceAll("{z}", z).replaceAll("{x}", col).replaceAll("{y}", row)
      .replaceAll("{TileMatrix}", z).replaceAll("{TileCol}", col).replaceAll("{TileRow}", row);
  }

  // The tiles covering bbox at the level whose tiles are about 256 px across on a map
  // ``pixels`` wide (or the deepest the server has), at most MAX_TILES of them.
  function tiles(cfg, bbox, pixels) {
    const m = MATRIX[cfg.matrix] || MATRIX.webmercator;
    const [w, s, e, n] = bbox;
    const degPerPx = (e - w) / Math.max(pixels, 1);
    let z = Math.min(cfg.max_zoom, Math.max(1, Math.ceil(Math.log2(360 / (256 * degPerPx)))));
    for (; z >= 1; z--) {
      const c0 = m.col(w, z), c1 = m.col(e, z), r0 = m.row(n, z), r1 = m.row(s, z);
      if ((c1 - c0 + 1) * (r1 - r0 + 1) > MAX_TILES) continue;
      const out = [];
      for (let row = r0; row <= r1; row++) {
        for (let col = c0; col <= c1; col++) {
          out.push({ z, col, row, url: tileUrl(cfg.url, z, col, row),
                     w: m.lon(col, z), e: m.lon(col + 1, z), n: m.lat(row, z), s: m.lat(row + 1, z) });
        }
      }
      return out;
    }
    return [];
  }

  // Draw the tiles under ``group`` (an SVG <g> behind the cells) for ``view``; the SVG
  // gets the class with-basemap.  No base map configured: nothing drawn.
  async function draw(group, view) {
    const cfg = await load();
    group.replaceChildren();
    if (!cfg.url || !view || !view.bbox) return [];
    const svg = group.ownerSVGElement;
    svg.classList.add("with-basemap");
    const found = tiles(cfg, view.bbox, svg.clientWidth || 1000);
    for (const t of found) {
      const x = view.x(t.w), y = view.y(t.n);
      const img = document.createElementNS(NS, "image");
      img.setAttribute("href", t.url);
      img.setAttribute("x", x);
      img.setAttribute("y", y);
      img.setAttribute("width", view.x(t.e) - x);
      img.setAttribute("height", view.y(t.s) - y);
      img.setAttribute("preserveAspectRatio", "none");
      img.dataset.tile = `${t.z}/${t.col}/${t.row}`;
      img.addEventListener("error", () => img.classList.add("missing"));
      group.append(img);
    }
    if (cfg.attribution) {
      const [, , width, height] = svg.getAttribute("viewBox").split(" ").map(Number);
      const text = document.createElementNS(NS, "text");
      text.setAttribute("x", width - width / 200);
      text.setAttribute("y", height - height / 200);
      text.setAttribute("text-anchor", "end");
      text.setAttribute("class", "basemap-attribution");
      text.setAttribute("style", `font-size:${Math.max(width, height) / 90}px`);
      text.textContent = cfg.attribution;
      group.append(text);
    }
    return found;
  }

  return { load, tiles, draw, MATRIX };
})();
