"""The functions of the browser test's web application (template.yaml)."""

import os

HTML = """<!doctype html><html><body><p id="result"></p><p id="blocked"></p><script>
(async () => {
  const shown = (id, text) => { document.getElementById(id).textContent = text; };
  try {
    const response = await fetch("%s/data?from=page", {headers: {"x-token": "t-1"}});
    shown("result", response.status + " " + JSON.stringify(await response.json()));
  } catch (error) { shown("result", "failed: " + error); }
  try {
    await fetch("%s/data");
    shown("blocked", "reached");
  } catch (error) { shown("blocked", "blocked by the browser"); }
})();
</script></body></html>"""


def page(event, context):
    return {"statusCode": 200, "headers": {"content-type": "text/html; charset=utf-8"},
            "body": HTML % (os.environ["DATA_URL"], os.environ["CLOSED_URL"])}


def data(event, context):
    return {"items": [1, 2, 3], "token": event["headers"].get("x-token"), "origin": event["headers"].get("origin")}
