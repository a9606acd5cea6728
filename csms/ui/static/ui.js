// The dashboard's live parts, without a build step or a library: an element with
// data-poll="URL" is refreshed every data-interval ms with the HTML fragment at URL.
(function () {
  'use strict';
  var status = null;

  function say(ok) {
    if (!status) status = document.querySelector('[data-updated]');
    if (status) status.textContent = ok ? 'updated ' + new Date().toLocaleTimeString() : 'connection lost, retrying';
  }

  function poll(el) {
    var url = el.getAttribute('data-poll');
    var every = parseInt(el.getAttribute('data-interval'), 10) || 2000;
    var busy = false;
    async function tick() {
      if (busy || document.hidden) return;
      busy = true;
      try {
        var res = await fetch(url, { headers: { 'X-UI-Poll': '1' }, credentials: 'same-origin', cache: 'no-store' });
        if (res.status === 401) {
          location.href = '/ui/login?next=' + encodeURIComponent(location.pathname + location.search);
          return;
        }
        if (!res.ok) { say(false); return; }
        var html = await res.text();
        if (html !== el.dataset.last) {
          var open = Array.prototype.map.call(el.querySelectorAll('details[open]'), function (d) { return d.className; });
          el.innerHTML = html;
          el.dataset.last = html;
          open.forEach(function (c) { var d = el.querySelector('details.' + c); if (d) d.open = true; });
        }
        say(true);
      } catch (e) {
        say(false);
      } finally {
        busy = false;
      }
    }
    setInterval(tick, every);
    document.addEventListener('visibilitychange', function () { if (!document.hidden) tick(); });
  }

  function init() {
    document.querySelectorAll('[data-poll]').forEach(poll);
    document.querySelectorAll('form[data-autosubmit] input[type=checkbox]').forEach(function (box) {
      box.addEventListener('change', function () { box.form.submit(); });
    });
    window.unstuckLoadedAt = Date.now(); // the browser tests check that a page was not reloaded
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init); else init();
})();
