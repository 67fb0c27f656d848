/* order-shell operator console: one script for every page, chosen by <body data-page>.
 * Plain ES2020, no build step. Data reaches the DOM only through textContent and attributes,
 * never innerHTML: dead letters hold whatever producers sent. */
'use strict';

(() => {
  const TOKEN_KEY = 'order-shell.operator-token';
  const HIDDEN = 'hidden: no operator token';
  const tokenConfigured = document.body.dataset.tokenConfigured === 'true';

  // Each page sets this: what to load again once the operator gives or forgets a token.
  let reloadPage = () => {};

  /* ---------- DOM helpers ---------- */

  const $ = (selector) => document.querySelector(selector);
  const $$ = (selector) => Array.from(document.querySelectorAll(selector));

  // createElement with attributes and children (strings become text nodes, so they are safe).
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') node.className = value;
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    node.append(...children.filter((child) => child !== null && child !== undefined));
    return node;
  }

  function clear(node) {
    node.replaceChildren();
    return node;
  }

  // Fills a table's body: one row per item, or one note row spanning every column when empty.
  function fillRows(selector, items, makeRow, emptyText, append = false) {
    const rows = $(`${selector} tbody`);
    if (!append) clear(rows);
    if (!items.length && !append) rows.append(noteRow($$(`${selector} thead th`).length, emptyText));
    for (const item of items) rows.append(makeRow(item));
  }

  const noteRow = (columns, text) => el('tr', {}, el('td', { colspan: columns, class: 'muted' }, text));
  const hiddenText = () => el('span', { class: 'hidden-content' }, HIDDEN);
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  const orDash = (value) => (value === null || value === undefined || value === '' ? '–' : String(value));

  // A date as local time, with the original text in the title (and machine-readable).
  function timeEl(value) {
    if (value === null || value === undefined || value === '') return el('span', { class: 'muted' }, '–');
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return el('span', {}, String(value));
    const iso = typeof value === 'number' ? date.toISOString() : String(value);
    return el('time', { datetime: date.toISOString(), title: iso }, date.toLocaleString());
  }

  function formatNumber(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return '–';
    const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
    return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
  }

  // `?a=1&b=2` from the non-empty values of an object ('' when there are none).
  function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== '') search.set(name, String(value));
    }
    const text = search.toString();
    return text ? `?${text}` : '';
  }

  // datetime-local inputs hold local time without an offset; the API wants UTC ISO 8601.
  function localInputToIso(value) {
    const date = new Date(value || ''); // no offset in the text: parsed as local time
    return Number.isNaN(date.getTime()) ? '' : date.toISOString().replace(/\.000Z$/, 'Z');
  }

  function isoToLocalInput(iso) {
    const date = new Date(iso || '');
    if (!iso || Number.isNaN(date.getTime())) return '';
    const two = (n) => String(n).padStart(2, '0');
    const text = `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}` +
      `T${two(date.getHours())}:${two(date.getMinutes())}`;
    return date.getSeconds() ? `${text}:${two(date.getSeconds())}` : text;
  }

  /* ---------- bytes ---------- */

  function base64Bytes(text) {
    try {
      return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    } catch {
      return null;
    }
  }

  const hexByte = (b) => b.toString(16).padStart(2, '0');

  // Classic dump: offset, 16 bytes in two groups of 8, then the printable ASCII.
  function hexDump(bytes) {
    if (!bytes) return '(the bytes are not valid base64)';
    if (!bytes.length) return '(no bytes)';
    const lines = [];
    for (let offset = 0; offset < bytes.length; offset += 16) {
      const chunk = Array.from(bytes.subarray(offset, offset + 16));
      const hex = chunk.map(hexByte);
      const ascii = chunk.map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
      lines.push(`${offset.toString(16).padStart(8, '0')}  ${hex.slice(0, 8).join(' ').padEnd(23)}  ` +
        `${hex.slice(8).join(' ').padEnd(23)}  |${ascii}|`);
    }
    return lines.join('\n');
  }

  // A header value as text when it is valid UTF-8, as hex otherwise.
  function headerValue(base64) {
    if (base64 === null || base64 === undefined) return el('span', { class: 'muted' }, '(no value)');
    const bytes = base64Bytes(base64);
    if (!bytes) return el('span', {}, base64);
    try {
      return el('span', {}, new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    } catch {
      return el('span', { class: 'mono', title: 'not UTF-8: shown as hex' }, Array.from(bytes, hexByte).join(' '));
    }
  }

  /* ---------- errors: always into #alert, never thrown ---------- */

  function showAlert(error, details) {
    clear($('#alert')).append(el('strong', {}, error || 'Something went wrong'), details || '');
  }

  const clearAlert = () => clear($('#alert'));

  // The {error, details} of a failed API answer, or `what` and the HTTP status when it has none.
  function showFailure(result, what) {
    const { error, details } = result.body;
    showAlert(error || `${what} (HTTP ${result.status || 'error'})`, details);
  }

  /* ---------- operator token: sessionStorage only, never in a URL, the DOM or the log ---------- */

  const tokens = {
    read() { try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; } },
    keep(token) { try { sessionStorage.setItem(TOKEN_KEY, token); return true; } catch { return false; } },
    forget() { try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* nothing was kept */ } },
  };

  function renderToken(message) {
    if (!tokenConfigured) return; // the template already says why there is no form
    const kept = tokens.read() !== null;
    $('#token-form').hidden = kept;
    $('#token-forget').hidden = !kept;
    $('#token-state').textContent = message ||
      (kept ? 'Token set for this tab' : 'No token set for this tab: enter the operator token.');
  }

  // A 401: a kept token is wrong (or was rotated), so drop it and ask again.
  function tokenRefused(sent) {
    if (!tokenConfigured) return;
    tokens.forget();
    renderToken(sent ? 'The token was refused: enter it again.' : 'This needs the operator token: enter it here.');
  }

  // True (and says so) when an action needs a token that this tab does not have yet.
  function needToken() {
    if (!tokenConfigured || tokens.read() !== null) return false;
    showAlert('Enter the operator token first', 'This action needs the operator token: enter it in the header.');
    $('#token-input').focus();
    return true;
  }

  function setupToken() {
    if (!tokenConfigured) return;
    $('#token-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const input = $('#token-input');
      const token = input.value.trim();
      input.value = '';
      if (!token) return renderToken('Enter a token first.');
      if (!tokens.keep(token)) return renderToken('This browser does not let the console keep the token for this tab.');
      renderToken();
      $('#token-forget').focus();
      clearAlert();
      return reloadPage();
    });
    $('#token-forget').addEventListener('click', () => {
      tokens.forget();
      renderToken('Token forgotten: enter the operator token to use it again.');
      $('#token-input').focus();
      reloadPage();
    });
    renderToken();
  }

  /* ---------- API ---------- */

  // Every API call goes through here: adds the token and never throws. Answers
  // {ok, status, body}, body always an object (the JSON answer, or {} when there is none).
  async function api(path, options = {}) {
    const headers = new Headers({ Accept: 'application/json' });
    const token = tokenConfigured ? tokens.read() : null;
    if (token) headers.set('Authorization', `Bearer ${token}`);
    const init = { method: options.method || 'GET', headers, cache: 'no-store', credentials: 'same-origin' };
    if (options.json !== undefined) {
      headers.set('Content-Type', 'application/json');
      init.body = JSON.stringify(options.json);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      return { ok: false, status: 0, body: { error: 'order-shell did not answer', details: String(error.message || error) } };
    }
    let body = {};
    try {
      const parsed = await response.json();
      if (parsed && typeof parsed === 'object') body = parsed;
    } catch { /* not JSON: the caller names the status instead */ }
    if (response.status === 401) tokenRefused(Boolean(token));
    return { ok: response.ok, status: response.status, body };
  }

  /* ---------- dead letters, shared by several pages ---------- */

  const letterId = (letter) => `${letter.dlqPartition}:${letter.dlqOffset}`;
  const decoded = (letter) => letter.errorType !== undefined;
  const letterAttrs = (letter) => ({ 'data-dlq-partition': letter.dlqPartition, 'data-dlq-offset': letter.dlqOffset });

  // "redriven N× (last at …)" when the letter was sent back, plus its redrive count when not 0.
  function redriveCell(letter) {
    const cell = el('td', { class: 'redrive' });
    if (!decoded(letter)) {
      cell.append('–');
      return cell;
    }
    if (letter.redriven) cell.append(`redriven ${letter.redriven.times}× (last at `, timeEl(letter.redriven.lastAt), ')');
    else if (letter.redriven === null) cell.append('not redriven');
    else cell.append('–'); // not told: no token, or the ledger could not be read
    if (letter.redriveCount) cell.append(el('br'), el('span', { class: 'muted' }, `redrive count ${letter.redriveCount}`));
    return cell;
  }

  const SKIP_REASONS = {
    alreadyRedriven: "sent back before; tick 'again' to send it anyway",
    maxRedrives: "redriven the maximum number of times; tick 'force'",
    reduced: 'letter holds only part of the payload',
    foreignTopic: 'its topic is not one this service may publish to',
    superseded: 'a newer status was applied to the order since',
    sameRecord: 'another letter of the same record comes first',
  };

  const OUTCOMES = {
    wouldRepublish: 'would be sent back',
    republished: 'sent back',
    skipped: 'skipped',
    failed: 'failed',
    unknown: 'unknown: may or may not have been sent',
  };

  /* ---------- overview ---------- */

  // Each chart: its element id, unit, and series (key in /api/console/overview, label, colour).
  const CHARTS = [
    { id: 'chart-records', unit: 'records/s', series: [['recordsPerSecond', 'records', '#0b57b0']] },
    { id: 'chart-dead-letters', unit: 'dead letters/s', series: [['deadLettersPerSecond', 'dead letters', '#a40e26']] },
    { id: 'chart-retries', unit: 'retries/s', series: [['retriesPerSecond', 'retries', '#8a5a00']] },
    { id: 'chart-latency', unit: 'ms', series: [['handlerP50Ms', 'p50', '#116329'], ['handlerP99Ms', 'p99', '#6639ba']] },
  ];
  const CHART_HEIGHT = 200;
  const MARKS = { ok: '✓', warn: '!', bad: '✕' };
  const COUNTERS = [['received', 'received'], ['applied', 'applied'], ['deadLettered', 'dead-lettered'],
    ['retries', 'retries'], ['inFlight', 'in flight']];

  // Each health part as [level, state word, detail text]: the words carry the meaning, colour only helps.
  function healthParts(health) {
    const { store = {}, producer = {}, deadLetters: dead = {}, consumer = {} } = health;
    const partitions = consumer.assignedPartitions || [];
    const counters = COUNTERS.filter(([key]) => typeof consumer[key] === 'number')
      .map(([key, label]) => `${label} ${consumer[key].toLocaleString()}`).join(', ');
    const failingFor = `Writing dead letters has failed for ${Math.round((dead.failingForMs || 0) / 1000)} s.`;
    return {
      broker: health.broker === 'available' ? ['ok', 'available', '']
        : ['bad', health.broker || 'unknown', 'The broker does not answer.'],
      store: store.state === 'available' ? ['ok', 'available', store.kind]
        : ['bad', store.state || 'unknown', [store.kind, store.error].filter(Boolean).join(': ')],
      producer: producer.state === 'ok' ? ['ok', 'ok', ''] : ['bad', producer.state || 'unknown', producer.error],
      deadLetters: dead.state === 'ok' ? ['ok', 'ok', '']
        : dead.state === 'retrying' ? ['warn', 'retrying', failingFor]
          : ['bad', dead.state || 'unknown', dead.error || failingFor],
      consumer: consumer.isRunning
        ? ['ok', 'running', `${plural(partitions.length, 'partition', 'partitions')}: ${partitions.join(', ') || 'none'}` +
          (counters ? `. ${counters}.` : '')]
        : ['warn', 'not running', consumer.state],
    };
  }

  function renderHealth(health) {
    const level = health.status === 'healthy' ? 'ok' : 'bad';
    const status = $('#health-status');
    status.className = `health-status ${level}`;
    status.textContent = `${MARKS[level]} order-shell is ${health.status || 'in an unknown state'}`;
    for (const [part, [state, word, detail]] of Object.entries(healthParts(health))) {
      const item = $(`#health li[data-part="${part}"]`);
      if (!item) continue;
      const name = item.querySelector('.part-name').textContent;
      item.className = state;
      clear(item).append(el('span', { class: 'part-name' }, name),
        el('span', { class: 'state-word' }, el('span', { class: 'mark', 'aria-hidden': 'true' }, MARKS[state]), word));
      if (detail) item.append(el('span', { class: 'part-detail' }, detail));
    }
  }

  function instanceRow(instance) {
    const name = el('td', {}, orDash(instance.clientId));
    if (instance.thisInstance) name.append(' ', el('span', { class: 'muted' }, '(this instance)'));
    const partitions = (instance.partitions || []).join(', ') || 'none';
    return el('tr', {}, name, el('td', {}, orDash(instance.host)), el('td', {}, partitions));
  }

  const lagRow = (row) => el('tr', {}, el('td', {}, orDash(row.topic)),
    el('td', {}, orDash(row.partition)), el('td', { class: 'num' }, formatNumber(row.lag)));

  // The last non-null point of a series, as [value, unix seconds], or null.
  function latestPoint(times, values) {
    for (let i = (values || []).length - 1; i >= 0; i -= 1) {
      if (values[i] !== null && values[i] !== undefined) return [values[i], times[i]];
    }
    return null;
  }

  // The text line under a chart: its latest values, for those who cannot see the chart.
  function renderLatest(spec, series) {
    const single = spec.series.length === 1;
    const points = spec.series.map(([key, label]) => {
      const point = latestPoint(series.t || [], series[key]);
      const value = `${formatNumber(point && point[0])} ${spec.unit}`;
      return { text: single ? value : `${label} ${value}`, at: point && point[1] };
    });
    const line = clear($(`#${spec.id}-latest`));
    const times = [...new Set(points.map((p) => p.at).filter((at) => at !== null))];
    if (!times.length) return line.append('Latest: no data yet');
    // One time for all when they agree; otherwise each value with its own.
    if (times.length === 1) return line.append(`Latest: ${points.map((p) => p.text).join(', ')} at `, timeEl(times[0] * 1000));
    line.append('Latest: ');
    points.forEach((p, i) => line.append(i ? ', ' : '', p.text, ...(p.at === null ? [] : [' at ', timeEl(p.at * 1000)])));
    return line;
  }

  // Up to now (or to the last sample, if the clocks disagree), in unix seconds: from the
  // first sample, at least five minutes and at most the hour kept.
  function lastHour(u, min, max) {
    const end = Math.max(max || 0, Date.now() / 1000);
    const first = Number.isFinite(min) ? min : end;
    return [Math.max(end - 3600, Math.min(first, end - 300)), end];
  }

  const clockTime = (seconds) => new Date(seconds * 1000)
    .toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

  function chartOptions(spec, width) {
    const axis = { stroke: '#57606a', grid: { stroke: '#e6e9ed', width: 1 }, ticks: { stroke: '#d0d7de' } };
    return {
      width,
      height: CHART_HEIGHT,
      // The last hour, always: a chart fills from the right as samples come, and a single
      // sample does not stretch the axis over years.
      // No legend: its rows toggle series by mouse only; the "Latest" line says the values.
      legend: { show: false },
      scales: { x: { time: true, range: lastHour }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      // Times of day only, on whole minutes: the window is at most an hour.
      axes: [{ ...axis, space: 70, incrs: [60, 120, 300, 600, 900, 1800], values: (u, splits) => splits.map(clockTime) }, { ...axis, size: 56 }],
      series: [{}, ...spec.series.map(([, label, stroke]) => ({
        label: spec.series.length === 1 ? spec.unit : `${label} (${spec.unit})`,
        stroke, width: 2, spanGaps: false, value: (u, v) => formatNumber(v),
        points: { show: true, size: 4 },
      }))],
    };
  }

  const boxWidth = (box) => Math.max(200, box.clientWidth || 300);

  // Draws the charts the first time, updates them after; without uPlot, only the text lines.
  function renderCharts(charts, series) {
    const times = series.t || [];
    for (const spec of CHARTS) {
      renderLatest(spec, series);
      if (typeof window.uPlot !== 'function') continue;
      const data = [times, ...spec.series.map(([key]) => series[key] || times.map(() => null))];
      if (charts.has(spec.id)) charts.get(spec.id).setData(data);
      else charts.set(spec.id, new window.uPlot(chartOptions(spec, boxWidth($(`#${spec.id}`))), data, $(`#${spec.id}`)));
    }
  }

  // Charts follow their box's width: one column on narrow windows, two on wide ones.
  function followWidth(charts) {
    if (typeof ResizeObserver !== 'function') return;
    const observer = new ResizeObserver(() => {
      for (const [id, chart] of charts) {
        const width = boxWidth($(`#${id}`));
        if (Math.abs(chart.width - width) > 1) chart.setSize({ width, height: CHART_HEIGHT });
      }
    });
    for (const spec of CHARTS) observer.observe($(`#${spec.id}`));
  }

  function setupOverview() {
    const charts = new Map();
    let busy = false;
    const refresh = async () => {
      if (busy || document.hidden) return; // no point polling a tab nobody looks at
      busy = true;
      try {
        const [health, overview] = await Promise.all([api('/health'), api('/api/console/overview')]);
        // /health answers 503 with the same body when unhealthy: that is data, not an error.
        if (health.body.status) renderHealth(health.body);
        if (overview.ok) {
          fillRows('#instances', overview.body.instances || [], instanceRow, 'No instances reported.');
          // The group as the coordinator sees it, unless it could not say: then this instance only.
          $('#instances-note').textContent = overview.body.membersError
            ? `Only this instance is shown: ${overview.body.membersError}.` : '';
          fillRows('#lag', overview.body.lag || [], lagRow, 'No lag reported.');
          renderCharts(charts, overview.body.series || {});
        }
        if (!health.body.status) showFailure(health, 'The health check failed');
        else if (!overview.ok) showFailure(overview, 'The overview could not be read');
        else clearAlert();
        clear($('#overview-updated')).append('Updated ', timeEl(new Date().toISOString()),
          '; refreshed every 5 seconds while this tab is visible.');
      } finally {
        busy = false;
      }
    };
    reloadPage = refresh;
    followWidth(charts);
    refresh();
    setInterval(refresh, 5000);
    document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
  }

  /* ---------- filters (dead letters and redrive pages) ---------- */

  const ERROR_CLASSES = ['retryable', 'permanent', 'poison'];

  // The filter fields of a form whose ids start with `prefix`, named as the API names them.
  function readFilter(prefix) {
    const value = (name) => $(`#${prefix}-${name}`).value.trim();
    return {
      orderId: value('order-id'),
      errorType: value('error-type'),
      errorClass: value('error-class'),
      fromTimestamp: localInputToIso(value('from')),
      toTimestamp: localInputToIso(value('to')),
    };
  }

  // Fills the filter fields from a URL's query (same names as the API).
  function writeFilter(prefix, params) {
    const errorClass = params.get('errorClass') || '';
    $(`#${prefix}-order-id`).value = params.get('orderId') || '';
    $(`#${prefix}-error-type`).value = params.get('errorType') || '';
    $(`#${prefix}-error-class`).value = ERROR_CLASSES.includes(errorClass) ? errorClass : '';
    $(`#${prefix}-from`).value = isoToLocalInput(params.get('fromTimestamp'));
    $(`#${prefix}-to`).value = isoToLocalInput(params.get('toTimestamp'));
  }

  /* ---------- dead letters page ---------- */

  function letterRow(letter, onDetails) {
    const id = letterId(letter);
    const key = decoded(letter) ? (letter.originalKey ?? '(no key)') : '(undecodable letter)';
    const select = el('input', { type: 'checkbox', class: 'select-letter', value: id, 'aria-label': `Select letter ${id} (order ${key})` });
    const details = el('button', { type: 'button', class: 'show-letter', 'aria-label': `Details of letter ${id}` }, 'Details');
    details.addEventListener('click', () => onDetails(letter, details));
    return el('tr', letterAttrs(letter),
      el('td', {}, select),
      el('td', { class: 'order-id' }, key),
      el('td', { class: 'error-type' }, decoded(letter) ? letter.errorType : 'does not decode'),
      el('td', { class: 'error-class' }, orDash(letter.errorClass)),
      el('td', { class: 'last-failure' }, timeEl(letter.lastFailureTimestamp)),
      redriveCell(letter),
      el('td', {}, details));
  }

  function addFact(list, term, ...value) {
    list.append(el('dt', {}, term), el('dd', {}, ...value));
  }

  function renderLetterFacts(letter, redacted) {
    const record = clear($('#letter-record'));
    const history = clear($('#letter-history'));
    const topic = document.body.dataset.dlqTopic;
    addFact(record, 'Dead letter', `${topic} partition ${letter.dlqPartition} offset ${letter.dlqOffset}`);
    if (!decoded(letter)) return addFact(record, 'Decoding', 'This letter does not decode as a dead letter of this service.');
    addFact(record, 'Record', `${letter.originalTopic}/${letter.originalPartition}@${letter.originalOffset}`);
    addFact(record, 'Key', letter.originalKey ?? '(none)');
    if (redacted) addFact(record, 'Key bytes', hiddenText());
    addFact(record, 'Timestamp', timeEl(letter.originalTimestamp));
    addFact(record, 'Error', `${letter.errorType} (${letter.errorClass})`);
    addFact(record, 'Consumer group', orDash(letter.consumerGroup));
    if (letter.reduced) {
      addFact(record, 'Reduced', 'yes: the letter holds only part of the payload' +
        (letter.originalValueSize ? ` (the record had ${letter.originalValueSize} bytes)` : ''));
    }
    addFact(history, 'First failure', timeEl(letter.firstFailureTimestamp));
    addFact(history, 'Last failure', timeEl(letter.lastFailureTimestamp));
    addFact(history, 'Attempts', `${letter.failedAttempts} failed (${plural(letter.retryCount, 'retry', 'retries')})`);
    addFact(history, 'Redrive count', orDash(letter.redriveCount));
    addFact(history, 'Redriven', letter.redriven ? `${letter.redriven.times}×` : 'never');
    if (letter.redriven) addFact(history, 'Last redriven at', timeEl(letter.redriven.lastAt));
    return undefined;
  }

  function prettyPayload(letter, redacted) {
    if (redacted) return HIDDEN;
    if (!decoded(letter)) return '(the letter did not decode: see its bytes below)';
    if (typeof letter.originalMessage !== 'string') return '(no decoded form: see the bytes below)';
    try {
      return JSON.stringify(JSON.parse(letter.originalMessage), null, 2);
    } catch {
      return letter.originalMessage; // not JSON text after all: shown as it is
    }
  }

  function showLetter(letter, redacted) {
    const id = letterId(letter);
    const heading = $('#letter-detail-heading');
    heading.textContent = `Letter ${id}${decoded(letter) && letter.originalKey ? `: order ${letter.originalKey}` : ''}`;
    const error = clear($('#letter-error'));
    if (redacted) error.append(hiddenText());
    else error.textContent = (decoded(letter) ? letter.errorMessage : letter.decodeError) || '(no message)';
    renderLetterFacts(letter, redacted);
    $('#letter-json').textContent = prettyPayload(letter, redacted);
    const raw = decoded(letter) ? letter.originalValue : letter.rawValue;
    $('#letter-hex').textContent = redacted ? HIDDEN : hexDump(base64Bytes(raw || ''));
    if (redacted) clear($('#letter-headers tbody')).append(el('tr', {}, el('td', { colspan: 2 }, hiddenText())));
    else {
      fillRows('#letter-headers', letter.originalHeaders || [], (header) =>
        el('tr', {}, el('td', {}, header.name), el('td', {}, headerValue(header.value))), 'No headers.');
    }
    $('#letter-order-link').hidden = !(decoded(letter) && letter.originalKey);
    $('#letter-order-link').href = `/console/orders${query({ orderId: letter.originalKey })}`;
    $('#letter-redrive-link').href = `/console/redrive?letters=${id}`;
    $('#letter-detail').hidden = false;
    heading.focus();
  }

  function setupDeadLetters() {
    const params = new URLSearchParams(location.search);
    const state = { filter: {}, limit: 50, cursor: null, nextCursor: null, previous: [], redacted: false, opener: null };
    writeFilter('filter', params);
    const limit = Number.parseInt(params.get('limit'), 10);
    if (limit >= 1 && limit <= 1000) $('#filter-limit').value = String(limit);

    const boxes = () => $$('#letters input.select-letter');
    const selected = () => boxes().filter((box) => box.checked).map((box) => box.value);
    const updateSelection = () => {
      const count = selected().length;
      $('#redrive-selected').disabled = count === 0;
      $('#selection-count').textContent = count ? `${plural(count, 'letter', 'letters')} selected.` : 'No letters selected.';
      for (const box of boxes()) box.closest('tr').classList.toggle('selected', box.checked);
    };
    // After paging, the button pressed may be hidden: move focus to one still shown, or the table.
    const keepPagingFocus = () => {
      if (document.activeElement && document.activeElement !== document.body && !document.activeElement.hidden) return;
      ($$('#next-page, #previous-page').find((b) => !b.hidden) || $('#letters').closest('.table-wrap')).focus();
    };
    const onDetails = (letter, button) => {
      state.opener = button;
      showLetter(letter, state.redacted);
    };

    const load = async () => {
      const result = await api(`/api/dlq/messages${query({ ...state.filter, limit: state.limit, cursor: state.cursor })}`);
      $('#letter-detail').hidden = true;
      const data = result.ok ? result.body : {};
      const letters = data.messages || [];
      state.redacted = Boolean(data.redacted);
      state.nextCursor = data.nextCursor || null;
      if (result.ok) clearAlert();
      else showFailure(result, 'The dead letters could not be read');
      const empty = result.ok
        ? (data.nextCursor ? 'No dead letters match on this page: the next page reads on.' : 'No dead letters match.')
        : result.status === 401 ? 'Enter the operator token to see the dead letters.' : 'No letters to show.';
      fillRows('#letters', letters, (letter) => letterRow(letter, onDetails), empty);
      $('#letters-summary').textContent = !result.ok ? ''
        : `Page ${state.previous.length + 1}: ${plural(letters.length, 'letter', 'letters')} ` +
          `(${(data.scanned ?? 0).toLocaleString()} records of ${data.dlqTopic || 'the topic'} read)` +
          (state.redacted ? '. Contents hidden: no operator token is configured.' : '.');
      $('#next-page').hidden = !state.nextCursor;
      $('#previous-page').hidden = state.previous.length === 0;
      updateSelection();
    };

    // Applying a filter starts again at the first page and keeps the filter in the URL.
    const apply = () => {
      state.filter = readFilter('filter');
      state.limit = Number.parseInt($('#filter-limit').value, 10) || 50;
      state.cursor = null;
      state.previous = [];
      $('#redrive-by-filter').href = `/console/redrive${query(state.filter)}`;
      const shown = { ...state.filter, limit: state.limit === 50 ? '' : state.limit };
      history.replaceState(null, '', `${location.pathname}${query(shown)}`);
      return load();
    };

    $('#letter-filter').addEventListener('submit', (event) => {
      event.preventDefault();
      apply();
    });
    $('#next-page').addEventListener('click', () => {
      state.previous.push(state.cursor);
      state.cursor = state.nextCursor;
      load().then(keepPagingFocus);
    });
    $('#previous-page').addEventListener('click', () => {
      state.cursor = state.previous.pop() ?? null;
      load().then(keepPagingFocus);
    });
    $('#letters tbody').addEventListener('change', updateSelection);
    $('#redrive-selected').addEventListener('click', () => {
      if (selected().length) location.assign(`/console/redrive?letters=${selected().join(',')}`);
    });
    $('#letter-close').addEventListener('click', () => {
      $('#letter-detail').hidden = true;
      if (state.opener && state.opener.isConnected) state.opener.focus();
    });
    reloadPage = load;
    apply();
  }

  /* ---------- redrive page ---------- */

  // `letters=P:O,P:O` from the URL: the letters, or null when there are none.
  function parseLetters(raw) {
    const letters = [];
    const refused = [];
    for (const part of (raw || '').split(',').map((p) => p.trim()).filter(Boolean)) {
      const match = /^(\d+):(\d+)$/.exec(part);
      if (match) letters.push({ dlqPartition: Number(match[1]), dlqOffset: Number(match[2]) });
      else refused.push(part);
    }
    if (refused.length) showAlert('Some letters were left out', `Not written as partition:offset: ${refused.join(', ')}`);
    return letters.length ? letters : null;
  }

  function outcomeRow(letter) {
    const outcome = letter.outcome || 'unknown';
    const cell = el('td', { class: 'outcome', 'data-outcome': outcome }, el('strong', {}, OUTCOMES[outcome] || outcome));
    if (letter.reason) cell.append(': ', SKIP_REASONS[letter.reason] || letter.reason);
    return el('tr', { class: 'letter-outcome', 'data-outcome': outcome, ...letterAttrs(letter) },
      el('td', { class: 'letter-id' }, letterId(letter)),
      el('td', {}, orDash(letter.originalKey)),
      el('td', {}, orDash(letter.originalTopic)),
      el('td', {}, orDash(letter.errorType)),
      el('td', { class: 'num' }, orDash(letter.redriveCount)),
      cell);
  }

  function reportSummary(report) {
    const n = (value) => (value ?? 0).toLocaleString();
    const reasons = Object.entries(report.skippedByReason || {}).filter(([, count]) => count > 0)
      .map(([reason, count]) => `${count} ${SKIP_REASONS[reason] ? `(${SKIP_REASONS[reason]})` : reason}`);
    const parts = [`${n(report.scanned)} letters read`, `${n(report.matched)} matched`,
      report.dryRun ? `${n(report.wouldRepublish)} would be sent back` : `${n(report.republished)} sent back`,
      `${n(report.skipped)} skipped${reasons.length ? `: ${reasons.join('; ')}` : ''}`];
    if (report.failed) parts.push(`${n(report.failed)} failed`);
    if (report.unknown) parts.push(`${n(report.unknown)} unknown (may or may not have been sent)`);
    let text = `${parts.join(', ')}.`;
    const stopped = typeof report.stopped === 'string' ? report.stopped : JSON.stringify(report.stopped);
    if (report.stopped) text += ` Stopped early: ${stopped}.`;
    if (report.maxRedrives !== undefined) text += ` A letter is redriven at most ${report.maxRedrives} times unless forced.`;
    return text;
  }

  // Fills #preview or #result with a redrive report.
  function renderReport(section, report) {
    $(`#${section}-summary`).textContent = reportSummary(report);
    fillRows(`#${section}-letters`, report.letters || [], outcomeRow, 'No letters matched.');
    $(`#${section}`).hidden = false;
  }

  function setupRedrive() {
    const params = new URLSearchParams(location.search);
    const picked = parseLetters(params.get('letters'));
    const confirm = $('#confirm-redrive');
    const hint = (text) => { $('#redrive-hint').textContent = text; };
    const state = { previewed: null, busy: false };

    // Selected letters or a filter: the other fieldset is hidden and disabled.
    $('#redrive-selection').hidden = !picked;
    $('#redrive-filter').hidden = Boolean(picked);
    $('#redrive-filter').disabled = Boolean(picked);
    if (picked) {
      $('#redrive-letters').append(...picked.map((letter) => el('li', {}, letterId(letter))));
    } else {
      writeFilter('redrive', params);
      const max = Number.parseInt(params.get('maxMessages'), 10);
      if (max >= 1) $('#redrive-max').value = String(max);
    }

    // The request body, named as the API names it; only what the form says.
    const request = () => {
      const body = picked ? { letters: picked } : {};
      if (!picked) {
        for (const [name, value] of Object.entries(readFilter('redrive'))) if (value) body[name] = value;
        const max = Number.parseInt($('#redrive-max').value, 10);
        if (max >= 1) body.maxMessages = max;
      }
      if ($('#redrive-again').checked) body.again = true;
      if ($('#redrive-force').checked) body.force = true;
      return body;
    };

    const setConfirm = (body, count) => {
      state.previewed = body;
      confirm.disabled = !body || state.busy;
      confirm.textContent = body ? `Send ${plural(count, 'letter', 'letters')} back` : 'Send letters back';
    };

    // A confirm only ever sends what was previewed: any change asks for a new preview.
    const invalidate = () => {
      if (!state.previewed) return;
      setConfirm(null);
      hint('The form changed: preview again before sending.');
    };

    const post = async (body) => {
      state.busy = true;
      $('#dry-run').disabled = true;
      confirm.disabled = true;
      const result = await api('/api/dlq/redrive', { method: 'POST', json: body });
      state.busy = false;
      $('#dry-run').disabled = !tokenConfigured;
      // 503 = stopped early: the report of what it did still comes, and is shown.
      if (result.ok) clearAlert();
      else showFailure(result, body.dryRun ? 'The preview failed' : 'The redrive failed');
      return result;
    };

    const preview = async () => {
      if (state.busy || !tokenConfigured || needToken()) return;
      const body = request();
      $('#result').hidden = true;
      const result = await post({ ...body, dryRun: true });
      const report = result.body.redrive;
      $('#preview').hidden = !report;
      if (!report) return setConfirm(null);
      renderReport('preview', report);
      const count = report.wouldRepublish ?? 0;
      // The send names the previewed letters, so letters that arrive meanwhile are not sent
      // unseen; a preview too long to list them all sends by its filter (and says so).
      const listed = (report.letters || []).filter((l) => l.outcome === 'wouldRepublish');
      const exact = listed.length === count ? { ...body, letters: listed.map((l) => ({ dlqPartition: l.dlqPartition, dlqOffset: l.dlqOffset })) } : body;
      if (exact.letters) delete exact.maxMessages;
      // Only a complete preview with something to send may be confirmed.
      setConfirm(result.ok && count > 0 ? exact : null, count);
      if (state.previewed && !exact.letters) {
        return hint('More letters than the preview lists: sending applies the same filter again, so letters that arrived since may go too.');
      }
      const everything = Object.keys(body).length === 0 ? 'No filter: this covers letters of every kind. ' : '';
      return hint(state.previewed ? `${everything}Check the preview, then send.`
        : 'Nothing to send: change the form and preview again.');
    };

    const send = async () => {
      const body = state.previewed;
      if (!body || state.busy || needToken()) return;
      setConfirm(null); // one send per preview
      const result = await post(body);
      hint('Preview again to send more.');
      if (result.body.redrive) renderReport('result', result.body.redrive);
      $('#result-heading').focus();
    };

    $('#redrive-form').addEventListener('submit', (event) => {
      event.preventDefault();
      preview();
    });
    $('#redrive-form').addEventListener('input', invalidate);
    $('#redrive-form').addEventListener('change', invalidate);
    confirm.addEventListener('click', send);
  }

  /* ---------- orders page ---------- */

  // DLQ pages the orders page reads at most looking for an order's letters.
  const LETTER_PAGES = 20;

  function money(amount, currency) {
    if (amount === null || amount === undefined) return '–';
    try {
      if (currency) return Number(amount).toLocaleString(undefined, { style: 'currency', currency });
    } catch { /* not an ISO currency code: shown as it is below */ }
    return `${amount}${currency ? ` ${currency}` : ''}`;
  }

  function renderOrder(order) {
    const facts = clear($('#order-facts'));
    $('#order-summary-heading').textContent = `Order ${orDash(order.orderId)}`;
    addFact(facts, 'Status', orDash(order.status));
    addFact(facts, 'Reason', orDash(order.statusReason));
    addFact(facts, 'Customer', orDash(order.customerId));
    addFact(facts, 'Date', timeEl(order.orderDate));
    addFact(facts, 'Total', money(order.totalAmount, order.currency));
    addFact(facts, 'Shipping cost', money(order.shippingCost, order.currency));
    const itemRow = (item) => el('tr', {}, el('td', {}, orDash(item.itemId)),
      el('td', { class: 'num' }, orDash(item.quantity)), el('td', { class: 'num' }, money(item.price, order.currency)));
    fillRows('#order-items', order.items || [], itemRow, 'No items.');
  }

  const historyRow = (entry) => el('tr', { class: 'history-entry' },
    el('td', { class: 'status' }, orDash(entry.status)),
    el('td', { class: 'reason' }, orDash(entry.reason)),
    el('td', { class: 'event-time' }, timeEl(entry.eventTime)),
    el('td', { class: 'applied-at' }, timeEl(entry.appliedAt)),
    el('td', { class: 'position' }, `${entry.topic}/${entry.partition}@${entry.offset}`));

  const orderLetterRow = (letter) => el('tr', letterAttrs(letter),
    el('td', { class: 'letter-id' }, letterId(letter)),
    el('td', {}, decoded(letter) ? letter.errorType : 'does not decode'),
    el('td', {}, orDash(letter.errorClass)),
    el('td', {}, timeEl(letter.lastFailureTimestamp)),
    redriveCell(letter),
    el('td', {}, el('a', { href: `/console/dead-letters${query({ orderId: letter.originalKey })}` }, 'Show in dead letters')));

  function setupOrders() {
    const state = { orderId: '', cursor: null };
    const more = $('#history-more');

    const loadHistory = async (append) => {
      const cursor = append ? state.cursor : '';
      const result = await api(`/api/order-history${query({ orderId: state.orderId, cursor, limit: 50 })}`);
      if (!result.ok) showFailure(result, 'The order history could not be read');
      fillRows('#order-history', result.body.entries || [], historyRow, 'No status applied yet.', append);
      state.cursor = result.ok ? result.body.nextCursor || null : null;
      more.hidden = !state.cursor;
    };

    // A page of the DLQ reads at most 10 000 records: follow the cursor to the topic's end
    // (or LETTER_PAGES pages, then say how far the search went) before saying "none".
    const loadLetters = async () => {
      const found = [];
      let cursor = '';
      let result = null;
      for (let page = 0; page < LETTER_PAGES; page += 1) {
        result = await api(`/api/dlq/messages${query({ orderId: state.orderId, limit: 100, cursor })}`);
        if (!result.ok) break;
        found.push(...(result.body.messages || []));
        cursor = result.body.nextCursor || '';
        if (!cursor || found.length >= 100) break;
      }
      const failed = result.status === 401 ? 'Enter the operator token to see the dead letters.'
        : `The dead letters could not be read: ${result.body.error || `HTTP ${result.status}`}`;
      const none = cursor ? `No dead letters for this order in the first ${LETTER_PAGES} pages of the topic.`
        : 'No dead letters for this order.';
      fillRows('#order-letters', found, orderLetterRow, result.ok ? none : failed);
    };

    const lookup = async (orderId) => {
      state.orderId = orderId;
      history.replaceState(null, '', `${location.pathname}${query({ orderId })}`);
      const result = await api(`/api/order-details${query({ orderId })}`);
      $('#order-result').hidden = !result.ok;
      if (result.status === 404) return showAlert(`No order ${orderId}`);
      if (!result.ok) return showFailure(result, 'The order could not be read');
      clearAlert();
      renderOrder(result.body.data || {});
      return Promise.all([loadHistory(false), loadLetters()]);
    };

    $('#order-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const orderId = $('#order-id').value.trim();
      if (orderId) lookup(orderId);
    });
    more.addEventListener('click', () => loadHistory(true));
    reloadPage = () => (state.orderId ? lookup(state.orderId) : undefined);
    const initial = (new URLSearchParams(location.search).get('orderId') || '').trim();
    if (initial) {
      $('#order-id').value = initial;
      lookup(initial);
    }
  }

  /* ---------- start ---------- */

  const PAGES = { overview: setupOverview, 'dead-letters': setupDeadLetters, redrive: setupRedrive, orders: setupOrders };
  setupToken();
  const setup = PAGES[document.body.dataset.page];
  if (setup) setup();
})();
