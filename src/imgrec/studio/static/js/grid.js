// A virtualised thumbnail grid: a class of 5,000 photos scrolls smoothly because only the
// rows in view (plus one above and below) exist in the DOM, and only their thumbnails are
// loaded. Image names come in pages of PAGE from /classes/{cls}/images as you scroll; pages
// far from the view are forgotten. Selection: click, Shift-click, Ctrl-click, and the
// keyboard (arrows move, Shift+arrows extend, Space toggles, Enter opens, Ctrl+A, Delete).

import { listImages } from "./api.js";
import { ICONS, h, icon } from "./dom.js";

const PAGE = 100;
const GAP = 8;
const MIN_TILE = 110;
const BUFFER_ROWS = 1;
const KEEP_PAGES = 3; // pages kept beyond the view each way

/** A thumbnail the server could not make (an unreadable file): say so on the tile. */
function markBroken(tile, name) {
  tile.classList.add("broken");
  tile.setAttribute("aria-label", `${name} (unreadable)`);
  tile.title = `${name}: this file could not be read as an image`;
}

export class VirtualGrid {
  /**
   * pid, cls: whose images; total: how many (the class count); label: for screen readers;
   * onSelection(count), onOpen(index), onDelete(): what the view does.
   */
  constructor({ pid, cls, total, label, onSelection, onOpen, onDelete }) {
    Object.assign(this, { pid, cls, total, onSelection, onOpen, onDelete });
    this.pages = new Map(); // page number -> images[] | Promise
    this.stale = new Map(); // pages from before reload(), shown until their update arrives
    this.tiles = new Map(); // index -> button
    this.selected = new Set(); // image names
    this.anchor = 0;
    this.focusIndex = 0;
    this.cols = 1;
    this.tile = MIN_TILE;
    this.generation = 0;
    this.canvas = h("div", { class: "grid-canvas" });
    this.element = h(
      "div",
      { class: "grid-scroller", role: "group", "aria-label": label, tabindex: "-1" },
      this.canvas,
    );
    this.element.addEventListener("scroll", () => this.schedule(), { passive: true });
    this.element.addEventListener("keydown", (event) => this.onKey(event));
    this.resizer = new ResizeObserver(() => this.layout());
    this.resizer.observe(this.element);
    this.layout();
  }

  destroy() {
    this.resizer.disconnect();
    this.generation += 1;
    this.pages.clear();
    this.stale.clear();
    this.tiles.clear();
    this.canvas.replaceChildren();
  }

  /** The class changed (another tab, an upload): forget pages, keep scroll and selection. */
  reload(total) {
    if (typeof total === "number") this.total = total;
    this.generation += 1;
    // the old pages stay on screen until the new ones arrive, so tiles do not blink
    this.stale = new Map([...this.pages].filter(([, images]) => Array.isArray(images)));
    this.pages = new Map();
    this.focusIndex = Math.min(this.focusIndex, Math.max(0, this.total - 1));
    this.layout();
  }

  layout() {
    const width = this.element.clientWidth || 600;
    this.cols = Math.max(2, Math.floor((width + GAP) / (MIN_TILE + GAP)));
    this.tile = Math.floor((width - GAP * (this.cols - 1)) / this.cols);
    const rows = Math.ceil(this.total / this.cols);
    this.canvas.style.height = `${Math.max(0, rows * (this.tile + GAP) - GAP)}px`;
    for (const [index, tile] of this.tiles) this.place(tile, index);
    this.draw();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  /** The first and last index in view, plus a buffer row each way. */
  visibleRange() {
    const rowHeight = this.tile + GAP;
    const top = this.element.scrollTop;
    const height = this.element.clientHeight || 400;
    const first = Math.max(0, Math.floor(top / rowHeight) - BUFFER_ROWS);
    const last = Math.ceil((top + height) / rowHeight) + BUFFER_ROWS;
    return [first * this.cols, Math.min(this.total, last * this.cols) - 1];
  }

  draw() {
    const [first, last] = this.visibleRange();
    for (const [index, tile] of this.tiles) {
      if (index < first || index > last) {
        if (tile.contains(document.activeElement)) this.element.focus({ preventScroll: true });
        tile.remove();
        this.tiles.delete(index);
      }
    }
    if (this.focusIndex < first || this.focusIndex > last) this.focusIndex = Math.max(0, first);
    for (let index = first; index <= last; index += 1) this.drawTile(index);
    this.forget(first, last);
  }

  drawTile(index) {
    const image = this.imageAt(index);
    let tile = this.tiles.get(index);
    if (!tile) {
      tile = h("button", {
        type: "button",
        class: "tile",
        dataset: { index: String(index) },
        on: {
          click: (event) => this.onClick(event, index),
          dblclick: () => this.onOpen?.(index),
        },
      });
      this.place(tile, index);
      this.canvas.append(tile);
      this.tiles.set(index, tile);
    }
    tile.tabIndex = index === this.focusIndex ? 0 : -1;
    if (!image) {
      if (tile.dataset.name) this.clearTile(tile);
      tile.setAttribute("aria-label", `Image ${index + 1} (loading)`);
      return;
    }
    if (tile.dataset.name !== image.name) this.fillTile(tile, image);
    const on = this.selected.has(image.name);
    tile.setAttribute("aria-pressed", on ? "true" : "false");
    tile.classList.toggle("selected", on);
  }

  clearTile(tile) {
    delete tile.dataset.name;
    tile.replaceChildren();
  }

  fillTile(tile, image) {
    const size = String(this.tile);
    tile.dataset.name = image.name;
    tile.title = image.name;
    tile.classList.remove("broken");
    tile.setAttribute("aria-label", image.name);
    tile.replaceChildren(
      h("img", {
        src: image.thumb,
        alt: "",
        loading: "lazy",
        decoding: "async",
        width: size,
        height: size,
        draggable: "false",
        on: { error: () => markBroken(tile, image.name) },
      }),
      h("span", { class: "tick", "aria-hidden": "true" }, icon(ICONS.check)),
    );
  }

  place(tile, index) {
    const row = Math.floor(index / this.cols);
    const col = index % this.cols;
    tile.style.left = `${col * (this.tile + GAP)}px`;
    tile.style.top = `${row * (this.tile + GAP)}px`;
    tile.style.width = `${this.tile}px`;
    tile.style.height = `${this.tile}px`;
    const img = tile.querySelector("img");
    if (img) {
      img.width = this.tile;
      img.height = this.tile;
    }
  }

  /** The image at `index` if its page is here; otherwise asks for the page and says null. */
  imageAt(index) {
    const page = Math.floor(index / PAGE);
    const images = this.pages.get(page);
    if (Array.isArray(images)) return images[index - page * PAGE] || null;
    if (!images) this.loadPage(page);
    const old = this.stale.get(page);
    return (old && old[index - page * PAGE]) || null;
  }

  loadPage(page) {
    const generation = this.generation;
    const promise = listImages(this.pid, this.cls, page * PAGE, PAGE).then(
      (answer) => {
        if (generation !== this.generation) return answer.images;
        this.pages.set(page, answer.images);
        this.stale.delete(page);
        if (answer.total !== this.total) {
          this.total = answer.total;
          this.layout();
        } else {
          this.draw();
        }
        return answer.images;
      },
      (error) => {
        if (generation === this.generation) this.pages.delete(page);
        throw error;
      },
    );
    this.pages.set(page, promise);
    promise.catch(() => {}); // shown by api.js; the page is asked again when scrolled to
    return promise;
  }

  async page(page) {
    const found = this.pages.get(page);
    if (Array.isArray(found)) return found;
    return found || this.loadPage(page);
  }

  /** The image at `index`, fetching its page when needed (the viewer, ranges). */
  async image(index) {
    const page = Math.floor(index / PAGE);
    const images = await this.page(page);
    return images[index - page * PAGE] || null;
  }

  forget(first, last) {
    const low = Math.floor(first / PAGE) - KEEP_PAGES;
    const high = Math.floor(last / PAGE) + KEEP_PAGES;
    for (const pages of [this.pages, this.stale]) {
      for (const page of pages.keys()) if (page < low || page > high) pages.delete(page);
    }
  }

  // --- selection ------------------------------------------------------------------------

  async onClick(event, index) {
    if (event.detail === 0) return; // a click made by Enter/Space: onKey handled it
    this.focusIndex = index;
    if (event.shiftKey) await this.selectRange(this.anchor, index, true);
    else {
      await this.toggle(index);
      this.anchor = index;
    }
    this.draw();
  }

  async toggle(index) {
    const image = await this.image(index);
    if (!image) return;
    if (this.selected.has(image.name)) this.selected.delete(image.name);
    else this.selected.add(image.name);
    this.changed();
  }

  async selectRange(a, b, add) {
    const [low, high] = a < b ? [a, b] : [b, a];
    if (!add) this.selected.clear();
    for (let page = Math.floor(low / PAGE); page <= Math.floor(high / PAGE); page += 1) {
      const images = await this.page(page);
      images.forEach((image, i) => {
        const index = page * PAGE + i;
        if (index >= low && index <= high) this.selected.add(image.name);
      });
    }
    this.changed();
  }

  async selectAll() {
    await this.selectRange(0, this.total - 1, true);
    this.draw();
  }

  clearSelection() {
    this.selected.clear();
    this.changed();
    this.draw();
  }

  changed() {
    this.onSelection?.(this.selected.size);
  }

  /** The selected images as {cls, name} refs for the move/delete calls. */
  selectedRefs() {
    return [...this.selected].map((name) => ({ cls: this.cls, name }));
  }

  // --- keyboard -------------------------------------------------------------------------

  onKey(event) {
    const moves = {
      ArrowRight: 1,
      ArrowLeft: -1,
      ArrowDown: this.cols,
      ArrowUp: -this.cols,
      PageDown: this.cols * this.rowsInView(),
      PageUp: -this.cols * this.rowsInView(),
      Home: -Infinity,
      End: Infinity,
    };
    if (event.key in moves) {
      event.preventDefault();
      this.moveFocus(moves[event.key], event.shiftKey);
    } else if (event.key === " ") {
      event.preventDefault();
      this.anchor = this.focusIndex;
      this.toggle(this.focusIndex).then(() => this.draw());
    } else if (event.key === "Enter") {
      event.preventDefault();
      this.onOpen?.(this.focusIndex);
    } else if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "a") {
      event.preventDefault();
      this.selectAll();
    } else if (event.key === "Delete" || event.key === "Backspace") {
      if (this.selected.size) {
        event.preventDefault();
        this.onDelete?.();
      }
    } else if (event.key === "Escape" && this.selected.size) {
      event.preventDefault();
      this.clearSelection();
    }
  }

  rowsInView() {
    return Math.max(1, Math.floor((this.element.clientHeight || 400) / (this.tile + GAP)));
  }

  async moveFocus(delta, extend) {
    if (!this.total) return;
    const target = Math.min(this.total - 1, Math.max(0, this.focusIndex + delta));
    this.focusIndex = target;
    this.scrollToIndex(target);
    this.draw();
    this.tiles.get(target)?.focus({ preventScroll: true });
    if (extend) {
      await this.selectRange(this.anchor, target, false);
      this.draw();
    } else {
      this.anchor = target;
    }
  }

  scrollToIndex(index) {
    const rowHeight = this.tile + GAP;
    const top = Math.floor(index / this.cols) * rowHeight;
    const view = this.element;
    if (top < view.scrollTop) view.scrollTop = top;
    else if (top + this.tile > view.scrollTop + view.clientHeight) {
      view.scrollTop = top + this.tile - view.clientHeight;
    }
  }
}
