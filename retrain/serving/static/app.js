// The kapps serve page: send each chosen picture to :classify and show its best answers
// (to :explain when the box is ticked: the answers and a heatmap of where the model looked).
// Plain DOM code, no library, so the page works offline and is served by kapps itself.
"use strict";

const TOP_K = 3;
const form = document.getElementById("upload");
const picker = document.getElementById("model");
const filesInput = document.getElementById("files");
const cameraInput = document.getElementById("camera");
const drop = document.getElementById("drop");
const explainBox = document.getElementById("explain");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
let maxUploadMb = 20;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function loadModels() {
  try {
    const response = await fetch("/v1/models");
    const body = await response.json();
    maxUploadMb = body.max_upload_mb;
    for (const model of body.models) {
      picker.append(new Option(model.name, model.name));
    }
    document.getElementById("model-row").hidden = body.models.length < 2;
  } catch (err) {
    statusLine.textContent = "Cannot reach the server: " + err.message;
  }
}

function showAnswers(body, predictions) {
  const list = element("ol", "answers");
  for (const p of predictions) {
    const item = element("li", "answer");
    item.dataset.label = p.label;
    item.dataset.translation = p.translation;
    item.dataset.score = p.score;
    const text = element("div", "text");
    const names = element("span");
    names.append(element("span", "translation", p.translation));
    if (p.translation !== p.label) names.append(element("span", "label", p.label));
    const percent = (100 * p.score).toFixed(1) + "%";
    text.append(names, element("span", "score", percent));
    const bar = element("div", "bar");
    const fill = element("span");
    fill.style.width = percent;
    bar.append(fill);
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", `${p.label} ${percent}`);
    item.append(text, bar);
    list.append(item);
  }
  body.append(list);
}

function showHeatmap(card, answer) {
  const img = element("img", "heatmap");
  img.src = "data:image/png;base64," + answer.overlay;
  img.alt = `Where the model looked for ${answer.label}`;
  img.title = `Grad-CAM heatmap of layer ${answer.layer} for ${answer.label}`;
  card.querySelector(".body").before(img);
}

function showError(body, message) {
  body.append(element("p", "error", message));
}

async function classify(file, card) {
  const body = card.querySelector(".body");
  const mb = file.size / (1024 * 1024);
  if (mb > maxUploadMb) {
    showError(body, `${file.name} is ${mb.toFixed(1)} MB, more than the ${maxUploadMb} MB ` +
      "this server takes; choose a smaller picture.");
    return;
  }
  const data = new FormData();
  data.append("file", file, file.name);
  const action = explainBox.checked ? "explain" : "classify";
  const url = `/v1/models/${encodeURIComponent(picker.value)}:${action}?top_k=${TOP_K}`;
  try {
    const response = await fetch(url, { method: "POST", body: data });
    const answer = await response.json();
    if (!response.ok) {
      showError(body, answer.error);
      return;
    }
    if (answer.overlay) showHeatmap(card, answer);
    showAnswers(body, answer.predictions);
  } catch (err) {
    showError(body, `${file.name} could not be sent: ${err.message}`);
  }
}

async function classifyAll(files) {
  await modelsLoaded;
  files = Array.from(files);
  if (!files.length) {
    statusLine.textContent = "Choose a picture first.";
    return;
  }
  statusLine.textContent = `Classifying ${files.length} picture(s)…`;
  results.replaceChildren();
  const jobs = files.map((file) => {
    const card = element("li", "card");
    if (file.type.startsWith("image/")) {
      const img = element("img");
      img.src = URL.createObjectURL(file);
      img.alt = file.name;
      card.append(img);
    }
    const body = element("div", "body");
    body.append(element("p", "name", file.name));
    card.append(body);
    results.append(card);
    return classify(file, card);
  });
  await Promise.all(jobs);
  statusLine.textContent = `Done: ${files.length} picture(s) with model ${picker.value}.`;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  classifyAll([...filesInput.files, ...cameraInput.files]);
});
filesInput.addEventListener("change", () => classifyAll(filesInput.files));
cameraInput.addEventListener("change", () => classifyAll(cameraInput.files));
explainBox.addEventListener("change", () => {
  const chosen = [...filesInput.files, ...cameraInput.files];
  if (chosen.length) classifyAll(chosen);  // the same pictures, with or without heatmaps
});
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  classifyAll(event.dataTransfer.files);
});
const modelsLoaded = loadModels();
