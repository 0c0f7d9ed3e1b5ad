// Strata's web console: hash routes, each page polling the admin API for live data.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { usePoll } from "./api.js";
import { Overview } from "./overview.jsx";
import { Topics, TopicDetail } from "./topics.jsx";
import { Groups, GroupDetail } from "./groups.jsx";
import { Sql } from "./sql.jsx";
import { Security } from "./security.jsx";
import { BrokerDetail } from "./brokers.jsx";
import "./app.css";

function useRoute() {
  const [hash, setHash] = useState(location.hash || "#/");
  useEffect(() => {
    const on = () => setHash(location.hash || "#/");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  const parts = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  return parts.filter((p, i) => p !== "" || i === 0);
}

const NAV = [
  ["", "Overview"],
  ["topics", "Topics"],
  ["groups", "Consumer groups"],
  ["sql", "SQL"],
  ["security", "ACLs & quotas"],
];

function Page({ route }) {
  const [section, id] = route;
  switch (section) {
    case "topics":
      return id ? <TopicDetail name={id} key={id} /> : <Topics />;
    case "groups":
      return id ? <GroupDetail id={id} key={id} /> : <Groups />;
    case "sql":
      return <Sql />;
    case "security":
      return <Security />;
    case "brokers":
      return id ? <BrokerDetail id={id} key={id} /> : <Overview />;
    case "":
    case undefined:
      return <Overview />;
    default:
      return (
        <section>
          <h1>Not found</h1>
          <p>
            No page here. <a href="#/">Back to the overview</a>.
          </p>
        </section>
      );
  }
}

function App() {
  const route = useRoute();
  const ready = usePoll("/readyz", 5000);
  useEffect(() => {
    const title = NAV.find(([k]) => k === (route[0] || ""));
    document.title = `${route[1] ? route[1] + " · " : ""}${title ? title[1] : "Strata"} · Strata`;
  }, [route.join("/")]);
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="#/">
          Strata
        </a>
        <nav aria-label="Main">
          <ul>
            {NAV.map(([k, label]) => (
              <li>
                <a href={`#/${k}`} aria-current={(route[0] || "") === k ? "page" : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span class={`ready ${ready.error ? "down" : "up"}`} role="status">
          {ready.error ? "broker not ready" : ready.data ? "ready" : "…"}
        </span>
      </header>
      <main id="main" tabIndex={-1}>
        <Page route={route} />
      </main>
    </>
  );
}

const root = document.getElementById("app");
root.textContent = ""; // the "Loading…" placeholder
render(<App />, root);
