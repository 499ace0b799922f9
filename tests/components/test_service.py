"""The recommendation service on a tiny registered champion: every endpoint, validation errors, the
cold-start fallback, filters, hot reload (also of a broken version) and the page in Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from shopdistill.components.artifacts import sha256_file
from shopdistill.components.guide import GuideError, load_guide
from shopdistill.components.guide import Request as GuideRequest
from shopdistill.components.registry import Registry
from shopdistill.components.service import GuideHolder, create_app
from tests.served import register_two_versions

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """A data folder whose registry holds v1 (champion) and v2 (another seed, not yet champion)."""
    return register_two_versions(tmp_path_factory.mktemp("served"))


def _holder(registry: Registry, engine: str = "onnx") -> GuideHolder:
    def champion_version():
        return registry.champion().version

    return GuideHolder(lambda v: load_guide(registry, version=v, engine=engine), champion_version)


@pytest.fixture
def client(champion):
    config, registry = champion
    registry.promote(1)
    with TestClient(create_app(_holder(registry), poll_seconds=0)) as c:
        yield c


def test_health_readiness_model_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready == {"ready": True, "version": "1", "engine": "onnx"}
    model = client.get("/model").json()
    assert model["version"] == "1" and "champion" in model["aliases"] and len(model["digests"]["onnx"]) == 64
    assert model["follows_champion"] and model["last_reload_error"] is None
    client.post("/recommend", json={"k": 3})
    metrics = client.get("/metrics").text
    assert 'shopdistill_requests_total{endpoint="/recommend",status="200"} 1.0' in metrics
    assert "shopdistill_request_seconds_bucket" in metrics and "shopdistill_model_version 1.0" in metrics


def test_a_session_gets_titled_recommendations_with_reasons_and_unknown_ids_reported(client):
    products = client.get("/catalogue/sample", params={"n": 5}).json()["products"]
    session = [products[0]["id"], products[1]["id"], "no-such-product"]
    body = client.post("/recommend", json={"items": session, "k": 4}).json()
    assert body["model"]["version"] == "1" and body["fallback"] is None
    assert body["unknown_items"] == ["no-such-product"] and body["history_used"] == 2
    recs = body["recommendations"]
    assert len(recs) == 4 and not {r["id"] for r in recs} & set(session)  # seen ones excluded
    titles = {products[0]["title"], products[1]["title"]}
    assert all(r["title"] and r["brand"] and r["category"] for r in recs)
    assert all(r["reason"].removeprefix("because you viewed ") in titles for r in recs)
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    # exclude_seen off: the session's products may come back
    again = client.post("/recommend", json={"items": session[:1] * 3, "k": 50, "exclude_seen": False})
    assert len(again.json()["recommendations"]) == 50


def test_an_empty_or_unknown_history_falls_back_to_popularity(client):
    empty = client.post("/recommend", json={"k": 3}).json()
    unknown = client.post("/recommend", json={"items": ["x", "y"], "k": 3}).json()
    assert empty["fallback"] == unknown["fallback"] == "popularity"
    assert [r["id"] for r in empty["recommendations"]] == [r["id"] for r in unknown["recommendations"]]
    assert all(r["reason"] == "popular in the shop" for r in empty["recommendations"])
    assert unknown["unknown_items"] == ["x", "y"]
    popular = client.get("/catalogue/sample", params={"n": 3}).json()["products"]
    assert [r["id"] for r in empty["recommendations"]] == [p["id"] for p in popular]


def test_filters_keep_only_the_category_or_brand(client):
    first = client.get("/catalogue/sample", params={"n": 1}).json()["products"][0]
    department = first["category"].split(" > ")[0]
    for query, check in (
        ({"category": department.upper()}, lambda r: r["category"].startswith(department + " > ")),
        ({"category": first["category"]}, lambda r: r["category"] == first["category"]),
        ({"brand": first["brand"]}, lambda r: r["brand"] == first["brand"]),
    ):
        body = {"items": [first["id"]], "k": 5, "exclude_seen": False, **query}
        recs = client.post("/recommend", json=body).json()
        assert recs["recommendations"] and all(check(r) for r in recs["recommendations"]), query
    none = client.post("/recommend", json={"items": [first["id"]], "brand": "no such brand"}).json()
    assert none["recommendations"] == []


def test_a_known_user_is_served_from_their_stored_history(client):
    user = client.get("/catalogue/sample").json()["users"][0]
    body = client.get(f"/users/{user}/recommendations", params={"k": 3}).json()
    assert body["history_used"] > 0 and body["fallback"] is None and len(body["recommendations"]) == 3
    posted = client.post("/recommend", json={"user": user, "k": 3}).json()
    assert posted["recommendations"] == body["recommendations"]
    missing = client.get("/users/nobody/recommendations")
    assert missing.status_code == 404 and "unknown user 'nobody'" in missing.json()["detail"]
    stranger = client.post("/recommend", json={"user": "nobody", "k": 2}).json()
    assert stranger["unknown_user"] == "nobody" and stranger["fallback"] == "popularity"


def test_a_long_history_is_truncated_to_the_models_window(client, champion):
    config, _ = champion
    products = [p["id"] for p in client.get("/catalogue/sample", params={"n": 10}).json()["products"]]
    body = client.post("/recommend", json={"items": products * 10, "k": 2}).json()
    window = config.student.model.max_len
    assert body["history_used"] == window and body["truncated"] == 100 - window


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"k": 0}, "k: Input should be greater than or equal to 1"),
        ({"k": 101}, "k: Input should be less than or equal to 100"),
        ({"items": "p1"}, "items: Input should be a valid list"),
        ({"items": [1, {"a": 2}]}, "items.1: Input should be a valid string"),
        ({"exclude_seen": "maybe"}, "exclude_seen: Input should be a valid boolean"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_malformed_bodies_get_422_naming_the_field(client, payload, field):
    response = client.post("/recommend", json=payload)
    assert response.status_code == 422 and field in response.json()["error"], response.json()
    assert (
        client.post(
            "/recommend", content="{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert client.get("/users/u1/recommendations", params={"k": 0}).status_code == 422


def test_hot_reload_follows_the_champion_and_a_broken_version_leaves_the_old_one_serving(champion):
    _, registry = champion
    registry.promote(1)
    holder = _holder(registry)
    with TestClient(create_app(holder, poll_seconds=0)) as client:
        assert client.post("/admin/reload").json() == {"reloaded": False, "version": "1"}
        registry.promote(2)
        assert client.post("/admin/reload").json() == {"reloaded": True, "version": "2", "previous": "1"}
        assert client.post("/recommend", json={"k": 1}).json()["model"]["version"] == "2"
        # a champion whose student no longer matches its digest cannot be loaded: v2 keeps serving
        mlflow = MlflowClient(registry.uri)
        good = registry.version(1).tags["student_digest"]
        mlflow.set_model_version_tag(registry.name, "1", "student_digest", "0" * 64)
        try:
            registry.promote(1)
            result = client.post("/admin/reload").json()
            assert result["reloaded"] is False and result["version"] == "2" and "v1" in result["error"]
            model = client.get("/model").json()
            assert model["version"] == "2" and "v1 cannot be served" in model["last_reload_error"]
            assert client.get("/readyz").json()["version"] == "2"
            assert 'shopdistill_reloads_total{outcome="error"} 1.0' in client.get("/metrics").text
        finally:
            mlflow.set_model_version_tag(registry.name, "1", "student_digest", good)
        assert client.post("/admin/reload").json()["reloaded"] is True
        assert client.get("/model").json()["last_reload_error"] is None


def test_the_poller_picks_up_a_moved_alias_while_requests_keep_being_answered(champion):
    _, registry = champion
    registry.promote(1)
    with TestClient(create_app(_holder(registry), poll_seconds=0.2)) as client:
        registry.promote(2)
        versions, deadline = set(), time.monotonic() + 30
        while time.monotonic() < deadline and "2" not in versions:
            response = client.post("/recommend", json={"items": [], "k": 2})
            assert response.status_code == 200
            versions.add(response.json()["model"]["version"])
        assert versions <= {"1", "2"} and "2" in versions
    registry.promote(1)


def test_a_missing_champion_or_engine_is_a_clear_error(champion, tmp_path):
    config, registry = champion
    empty = Registry(config.registry, tmp_path)
    with pytest.raises(GuideError, match="no champion registered"):
        load_guide(empty)
    with pytest.raises(GuideError, match="unknown engine 'tpu'"):
        load_guide(registry, engine="tpu")


def test_torch_and_int8_engines_and_a_checkpoint_serve_the_same_catalogue(champion):
    config, registry = champion
    registry.promote(1)
    fp32 = load_guide(registry)
    for guide in (load_guide(registry, engine="torch"), load_guide(registry, engine="onnx-int8")):
        assert guide.info.n_items == fp32.info.n_items
        top = guide.recommend(_request())["recommendations"][0]["id"]
        assert top in {r["id"] for r in fp32.recommend(_request(k=10))["recommendations"]}
    teacher = next((Path(config.runtime.root) / "teachers").glob("*/best.pt"))
    served = load_guide(registry, checkpoint=teacher)
    assert served.info.engine == "torch" and served.info.digests == {"model": str(teacher)}


def test_an_ensemble_teacher_is_served_from_its_record(champion, tmp_path):
    from shopdistill.components.models.checkpoint import write_ensemble

    config, registry = champion
    teacher = next((Path(config.runtime.root) / "teachers").glob("*/best.pt"))
    write_ensemble(tmp_path / "pair", [(teacher, sha256_file(teacher))] * 2)
    single = load_guide(registry, checkpoint=teacher)
    pair = load_guide(registry, checkpoint=tmp_path / "pair")
    assert pair.embeddings.shape[1] == 2 * single.embeddings.shape[1]  # the members side by side
    request = GuideRequest(items=list(single.catalogue.raw[1:4]), k=5)
    ids = [[r["id"] for r in g.recommend(request)["recommendations"]] for g in (single, pair)]
    assert ids[0] == ids[1]  # two equal members: the same ranking as one
    teacher_copy = tmp_path / "member.pt"
    teacher_copy.write_bytes(teacher.read_bytes())
    write_ensemble(tmp_path / "changed", [(teacher_copy, sha256_file(teacher_copy))])
    teacher_copy.write_bytes(b"retrained")
    with pytest.raises(GuideError, match="changed since"):
        load_guide(registry, checkpoint=tmp_path / "changed")


def _request(k: int = 1):
    from shopdistill.components.guide import Request

    return Request(items=[], user=None, k=k)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
@pytest.mark.skipif(
    not shutil.which("chromium") or not shutil.which("chromedriver"),
    reason="needs Debian's chromium and chromium-driver",
)
def test_the_page_in_chromium_updates_the_recommendations_when_a_product_is_clicked(champion, tmp_path):
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, registry = champion
    registry.promote(1)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(_holder(registry), poll_seconds=0), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(30)
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "yes")

        def shown(what: str = "e.dataset.id") -> list[str]:  # read in one script: the list re-renders
            return driver.execute_script(f"return [...document.querySelectorAll('li.rec')].map(e => {what})")

        before = shown()
        assert len(before) == 10 and "popular" in driver.find_element(By.ID, "note").text
        driver.find_elements(By.CSS_SELECTOR, "button.product")[3].click()
        wait.until(
            lambda d: (
                shown() != before and "From the last 1 product viewed" in d.find_element(By.ID, "note").text
            )
        )
        reasons = shown("e.querySelector('.reason').textContent")
        assert reasons and all(r.startswith("because you viewed") for r in reasons)
        assert "v1 (onnx)" in driver.find_element(By.ID, "model").text
        artifacts = Path(os.environ.get("SHOPDISTILL_TEST_ARTIFACTS", tmp_path))
        artifacts.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(artifacts / "shopping-guide.png"))
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(timeout=10)
