import time
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from selenium.webdriver.support import expected_conditions as EC
from tests.e2e.conftest import chromium_driver

def test_probe(airflow_server, output_dir):
    d = chromium_driver()
    try:
        d.get(airflow_server.base_url + "/")
        w = WebDriverWait(d, 30)
        user = w.until(EC.presence_of_element_located((By.NAME, "username")))
        user.send_keys("admin")
        d.find_element(By.NAME, "password").send_keys("admin")
        d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        w.until(lambda drv: "/auth/login" not in drv.current_url)
        d.get(airflow_server.base_url + "/dags")
        time.sleep(5)
        d.save_screenshot(str(output_dir / "probe.png"))
        print(d.current_url)
        print(d.find_element(By.TAG_NAME, "body").text[:1500])
    finally:
        d.quit()
