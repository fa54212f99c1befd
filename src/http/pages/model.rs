//! The champion model's report.

use super::*;

#[derive(Template)]
#[template(path = "message.html")]
pub(super) struct MessagePage {
    nav: Nav,
    title: String,
    text: String,
}

pub(super) async fn model(State(state): State<AppState>, PageUser(s): PageUser) -> PageResult {
    let champion = state.ctx.db.champion_model().await?;
    let model = state.ctx.scoring_model().await?;
    let source = match (&champion, &state.ctx.config.scoring.model) {
        (_, Some(path)) => format!("the configured model file {}", path.display()),
        (Some(c), None) => format!("the registry's champion {}", c.version),
        (None, None) => "the shipped Telco model (no model has been trained here yet)".into(),
    };
    let Some(eval) = model.evaluation.as_ref() else {
        return render(&MessagePage {
            nav: nav(&s, "model"),
            title: format!("Model {}", model.version),
            text: format!(
                "attune scores with {source}, which was trained without held-out rows, so there is no evaluation to report. Train with `attune train` (from history) to get one."
            ),
        });
    };
    let html =
        crate::report::render_html(&model, eval, &format!("Champion model {}", model.version));
    let bar = format!(
        "<div style=\"background:#1d2330;color:#dfe6f3;padding:8px 24px;font:14px system-ui,sans-serif\">\
         <a href=\"/queue\" style=\"color:#fff;font-weight:700;text-decoration:none\">attune review desk</a> · \
         <a href=\"/queue\" style=\"color:#dfe6f3\">Queue</a> · <a href=\"/overview\" style=\"color:#dfe6f3\">Overview</a> · \
         <a href=\"/audit\" style=\"color:#dfe6f3\">Audit log</a> · scoring with {}</div>",
        crate::report::escape(&source)
    );
    Ok(Html(html.replacen("<body>", &format!("<body>{bar}"), 1)).into_response())
}
