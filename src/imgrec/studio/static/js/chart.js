// The training curve: loss (left axis) and validation accuracy (right axis) per finished
// epoch, drawn on a canvas as the rows arrive. The canvas has a text alternative that says
// the latest numbers.

import { h, percent } from "./dom.js";

const COLORS = { train: "#1d4ed8", val: "#b45309", acc: "#15803d", grid: "#d1d5db", text: "#374151" };
const PAD = { left: 44, right: 44, top: 14, bottom: 28 };

export class Curve {
  constructor() {
    this.rows = [];
    this.canvas = h("canvas", { class: "curve", role: "img", "aria-label": "No epochs finished yet." });
    this.legend = h(
      "p",
      { class: "legend" },
      h("span", { class: "key train" }, "training loss"),
      h("span", { class: "key val" }, "validation loss"),
      h("span", { class: "key acc" }, "validation accuracy"),
    );
    this.element = h("figure", { class: "curve-figure" }, this.canvas, h("figcaption", {}, this.legend));
    this.resizer = new ResizeObserver(() => this.draw());
    this.resizer.observe(this.canvas);
  }

  destroy() {
    this.resizer.disconnect();
  }

  set(rows) {
    this.rows = rows.filter(isEpochRow);
    this.draw();
  }

  add(row) {
    if (!isEpochRow(row)) return;
    const last = this.rows[this.rows.length - 1];
    if (last && last.phase === row.phase && last.epoch === row.epoch) return; // seen already
    this.rows.push(row);
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 600;
    const height = canvas.clientHeight || 220;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    g.font = "12px system-ui, sans-serif";
    const rows = this.rows;
    this.describe();
    if (!rows.length) {
      g.fillStyle = COLORS.text;
      g.fillText("The curve appears as epochs finish.", PAD.left, height / 2);
      return;
    }
    const plot = { x: PAD.left, y: PAD.top, w: width - PAD.left - PAD.right, h: height - PAD.top - PAD.bottom };
    const losses = rows.flatMap((r) => [r.train_loss, r.val_loss]).filter(Number.isFinite);
    const maxLoss = Math.max(0.1, ...losses) * 1.1;
    const x = (i) => plot.x + (rows.length === 1 ? plot.w / 2 : (i * plot.w) / (rows.length - 1));
    const yLoss = (v) => plot.y + plot.h - (v / maxLoss) * plot.h;
    const yAcc = (v) => plot.y + plot.h - v * plot.h;
    axes(g, plot, maxLoss, rows);
    line(g, rows.map((r, i) => [x(i), Number.isFinite(r.train_loss) ? yLoss(r.train_loss) : null]), COLORS.train, []);
    line(g, rows.map((r, i) => [x(i), Number.isFinite(r.val_loss) ? yLoss(r.val_loss) : null]), COLORS.val, [5, 4]);
    line(g, rows.map((r, i) => [x(i), Number.isFinite(r.val_acc) ? yAcc(r.val_acc) : null]), COLORS.acc, []);
    phaseMarks(g, plot, rows, x);
  }

  describe() {
    const last = this.rows[this.rows.length - 1];
    if (!last) {
      this.canvas.setAttribute("aria-label", "No epochs finished yet.");
      return;
    }
    const parts = [`${this.rows.length} epochs so far`];
    if (Number.isFinite(last.val_acc)) parts.push(`validation accuracy ${percent(last.val_acc, 1)}`);
    if (Number.isFinite(last.train_loss)) parts.push(`training loss ${last.train_loss.toFixed(3)}`);
    if (Number.isFinite(last.val_loss)) parts.push(`validation loss ${last.val_loss.toFixed(3)}`);
    this.canvas.setAttribute("aria-label", `Training curve: ${parts.join(", ")}.`);
  }
}

/** An epoch row from the events stream or a job's events (history.csv's fields). */
export function isEpochRow(row) {
  return Boolean(row) && Number.isFinite(row.epoch) && (Number.isFinite(row.val_acc) || Number.isFinite(row.train_loss));
}

function axes(g, plot, maxLoss, rows) {
  g.strokeStyle = COLORS.grid;
  g.lineWidth = 1;
  g.fillStyle = COLORS.text;
  for (let k = 0; k <= 4; k += 1) {
    const y = plot.y + plot.h - (k / 4) * plot.h;
    g.beginPath();
    g.moveTo(plot.x, y);
    g.lineTo(plot.x + plot.w, y);
    g.stroke();
    g.textAlign = "right";
    g.fillText(((maxLoss * k) / 4).toFixed(2), plot.x - 6, y + 4);
    g.textAlign = "left";
    g.fillText(`${k * 25}%`, plot.x + plot.w + 6, y + 4);
  }
  g.textAlign = "center";
  g.fillText(`epoch (${rows.length} finished)`, plot.x + plot.w / 2, plot.y + plot.h + 20);
  g.textAlign = "left";
}

function line(g, points, color, dash) {
  g.strokeStyle = color;
  g.fillStyle = color;
  g.lineWidth = 2;
  g.setLineDash(dash);
  g.beginPath();
  let started = false;
  for (const [px, py] of points) {
    if (py === null) {
      started = false;
      continue;
    }
    if (started) g.lineTo(px, py);
    else g.moveTo(px, py);
    started = true;
  }
  g.stroke();
  g.setLineDash([]);
  for (const [px, py] of points) {
    if (py === null) continue;
    g.beginPath();
    g.arc(px, py, 2.5, 0, Math.PI * 2);
    g.fill();
  }
}

function phaseMarks(g, plot, rows, x) {
  g.fillStyle = COLORS.text;
  g.strokeStyle = COLORS.grid;
  rows.forEach((row, i) => {
    if (i === 0 || row.phase === rows[i - 1].phase) return;
    const px = (x(i - 1) + x(i)) / 2;
    g.setLineDash([2, 3]);
    g.beginPath();
    g.moveTo(px, plot.y);
    g.lineTo(px, plot.y + plot.h);
    g.stroke();
    g.setLineDash([]);
    g.fillText(String(row.phase || ""), px + 4, plot.y + 10);
  });
}
