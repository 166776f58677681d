import { ApiError, type ApiClient } from "../api/client";
import { h } from "../dom";

export function mountLogin(container: HTMLElement, api: ApiClient, onLoggedIn: () => void): void {
  const user = h("input", { name: "username", autocomplete: "username", required: true, "data-testid": "login-user" });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
    "data-testid": "login-password",
  });
  const message = h("p", { class: "error", "data-testid": "login-error", role: "alert" });
  const form = h(
    "form",
    { class: "login", "data-testid": "login-form" },
    h("h1", {}, "Carina"),
    h("label", {}, "User ", user),
    h("label", {}, "Password ", password),
    h("button", { type: "submit", "data-testid": "login-submit" }, "Sign in"),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    try {
      await api.login(user.value, password.value);
      onLoggedIn();
    } catch (error) {
      message.textContent =
        error instanceof ApiError && error.status === 401 ? "Wrong user name or password." : String(error);
    }
  });
  container.append(form);
  user.focus();
}
