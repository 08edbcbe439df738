//! One egui window drawn by the CPU: winit for the window and its events,
//! egui-winit for egui's input, and [`raster`] into a softbuffer surface
//! (X11 shared memory under X). eframe draws with OpenGL, and on a machine
//! without a GPU that means Mesa's llvmpipe: libLLVM and the swrast driver
//! mapped into the process, about 90 MB of the agent's 123 MB. A small
//! window that repaints only when something changes costs a few
//! milliseconds of CPU a frame instead.
//!
//! It does what eframe did for the agent's one window: the title, size and
//! always-on-top of a [`egui::ViewportBuilder`], repaints when asked (also
//! from other threads, `request_repaint_after` included), viewport commands
//! (title, close), and the close button shown to the app as
//! `close_requested()`, closing unless the app answers `CancelClose`.

use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Context as _};
use egui::{ViewportCommand, ViewportId, ViewportInfo};
use winit::application::ApplicationHandler;
use winit::event::WindowEvent;
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop, EventLoopProxy};
use winit::window::{Window, WindowId};

pub use egui;
pub use winit;

pub mod raster;

/// What the window shows, drawn again at every repaint.
pub trait App {
    fn ui(&mut self, ui: &mut egui::Ui);
}

/// Opens the window described by `viewport` and runs it on this thread (the
/// main thread: winit's rule) until it closes. `setup` makes the app once
/// the window exists (it may keep the context, to ask for repaints).
pub fn run<A: App>(
    viewport: egui::ViewportBuilder,
    setup: impl FnOnce(&egui::Context, &Window) -> A,
) -> anyhow::Result<()> {
    let event_loop = EventLoop::<()>::with_user_event()
        .build()
        .context("opening the display")?;
    let ctx = egui::Context::default();
    let wake = Arc::new(Mutex::new(None::<Instant>));
    let proxy = Mutex::new(event_loop.create_proxy());
    let asked = wake.clone();
    ctx.set_request_repaint_callback(move |info| {
        ask_repaint(&asked, Instant::now() + info.delay);
        wake_loop(&proxy);
    });
    let mut runner = Runner {
        viewport,
        setup: Some(setup),
        ctx,
        wake,
        open: None,
        error: None,
    };
    event_loop
        .run_app(&mut runner)
        .context("running the window")?;
    match runner.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn wake_loop(proxy: &Mutex<EventLoopProxy<()>>) {
    let proxy = proxy.lock().unwrap_or_else(|p| p.into_inner());
    // Fails only once the loop is gone, when nothing needs painting.
    let _ = proxy.send_event(());
}

/// Keeps the earliest repaint asked for.
fn ask_repaint(wake: &Mutex<Option<Instant>>, at: Instant) {
    let mut w = wake.lock().unwrap_or_else(|p| p.into_inner());
    *w = Some(w.map_or(at, |t| t.min(at)));
}

struct Runner<A, S> {
    viewport: egui::ViewportBuilder,
    setup: Option<S>,
    ctx: egui::Context,
    /// When the next repaint is due, if one was asked for.
    wake: Arc<Mutex<Option<Instant>>>,
    open: Option<Open<A>>,
    error: Option<anyhow::Error>,
}

/// The window once it exists.
struct Open<A> {
    window: Rc<Window>,
    surface: softbuffer::Surface<Rc<Window>, Rc<Window>>,
    state: egui_winit::State,
    info: ViewportInfo,
    painter: raster::Painter,
    app: A,
}

impl<A: App, S: FnOnce(&egui::Context, &Window) -> A> Runner<A, S> {
    fn open(&mut self, event_loop: &ActiveEventLoop) -> anyhow::Result<Open<A>> {
        let window = egui_winit::create_window(&self.ctx, event_loop, &self.viewport)
            .context("creating the window")?;
        let window = Rc::new(window);
        let context = softbuffer::Context::new(window.clone())
            .map_err(|e| anyhow!("{e}"))
            .context("connecting the software surface")?;
        let surface = softbuffer::Surface::new(&context, window.clone())
            .map_err(|e| anyhow!("{e}"))
            .context("creating the software surface")?;
        let state = egui_winit::State::new(
            self.ctx.clone(),
            ViewportId::ROOT,
            &*window,
            Some(window.scale_factor() as f32),
            window.theme(),
            None,
        );
        let mut info = ViewportInfo::default();
        egui_winit::update_viewport_info(&mut info, &self.ctx, &window, true);
        let setup = self.setup.take().context("the window opened twice")?;
        let app = setup(&self.ctx, &window);
        window.request_redraw();
        Ok(Open {
            window,
            surface,
            state,
            info,
            painter: raster::Painter::default(),
            app,
        })
    }

    /// One egui pass and its pixels. Returns false when the window closes.
    fn frame(&mut self) -> anyhow::Result<bool> {
        let Some(open) = &mut self.open else {
            return Ok(true);
        };
        let ctx = &self.ctx;
        let mut input = open.state.take_egui_input(&open.window);
        egui_winit::update_viewport_info(&mut open.info, ctx, &open.window, false);
        input.viewports.insert(ViewportId::ROOT, open.info.clone());
        open.info.events.clear();
        let close_requested = input.viewport().close_requested();
        let mut output = ctx.run_ui(input, |ui| open.app.ui(ui));
        open.state
            .handle_platform_output(&open.window, std::mem::take(&mut output.platform_output));
        let viewport = output.viewport_output.remove(&ViewportId::ROOT);
        let (commands, delay) =
            viewport.map_or((Vec::new(), None), |v| (v.commands, Some(v.repaint_delay)));
        if close_requested && !commands.contains(&ViewportCommand::CancelClose) {
            open.painter.skip(output.textures_delta);
            return Ok(false);
        }
        let mut actions = Vec::new();
        egui_winit::process_viewport_commands(
            ctx,
            &mut open.info,
            commands,
            &open.window,
            &mut actions,
        );
        if !open.info.events.is_empty() {
            // A Close the app asked for: shown to it as close_requested().
            open.window.request_redraw();
        }
        if let Some(at) = delay.and_then(|d| Instant::now().checked_add(d)) {
            ask_repaint(&self.wake, at);
        }
        let primitives = ctx.tessellate(output.shapes, output.pixels_per_point);
        let size = open.window.inner_size();
        let (Some(w), Some(h)) = (NonZeroU32::new(size.width), NonZeroU32::new(size.height)) else {
            open.painter.skip(output.textures_delta); // minimised: nothing to draw into
            return Ok(true);
        };
        open.surface.resize(w, h).map_err(|e| anyhow!("{e}"))?;
        let mut buffer = open.surface.buffer_mut().map_err(|e| anyhow!("{e}"))?;
        let mut target = raster::Target {
            pixels: &mut buffer,
            width: size.width as usize,
            height: size.height as usize,
        };
        let clear = ctx.global_style().visuals.panel_fill;
        open.painter.paint(
            &mut target,
            clear,
            &primitives,
            output.textures_delta,
            output.pixels_per_point,
        );
        buffer.present().map_err(|e| anyhow!("{e}"))?;
        Ok(true)
    }

    fn fail(&mut self, event_loop: &ActiveEventLoop, e: anyhow::Error) {
        self.error = Some(e);
        event_loop.exit();
    }
}

impl<A: App, S: FnOnce(&egui::Context, &Window) -> A> ApplicationHandler for Runner<A, S> {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.open.is_some() {
            return;
        }
        match self.open(event_loop) {
            Ok(open) => self.open = Some(open),
            Err(e) => self.fail(event_loop, e),
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _: WindowId, event: WindowEvent) {
        let Some(open) = &mut self.open else {
            return;
        };
        let key_waiting = |open: &Open<A>| {
            let events = &open.state.egui_input().events;
            events
                .iter()
                .any(|e| matches!(e, egui::Event::Key { pressed: true, .. }))
        };
        if matches!(event, WindowEvent::KeyboardInput { .. }) && key_waiting(open) {
            // One key press a pass: egui moves the focus once a pass however
            // many Tabs it was given, so keys typed faster than frames are
            // drawn (a busy machine, xdotool) would skip widgets.
            match self.frame() {
                Ok(true) => {}
                Ok(false) => return event_loop.exit(),
                Err(e) => return self.fail(event_loop, e.context("drawing the window")),
            }
        }
        let Some(open) = &mut self.open else {
            return;
        };
        match event {
            WindowEvent::RedrawRequested => match self.frame() {
                Ok(true) => {}
                Ok(false) => event_loop.exit(),
                Err(e) => self.fail(event_loop, e.context("drawing the window")),
            },
            event => {
                if matches!(event, WindowEvent::CloseRequested) {
                    open.info.events.push(egui::ViewportEvent::Close);
                }
                if open.state.on_window_event(&open.window, &event).repaint {
                    open.window.request_redraw();
                }
            }
        }
    }

    fn user_event(&mut self, _: &ActiveEventLoop, _: ()) {
        // A repaint was asked for: about_to_wait looks at when.
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        let Some(open) = &self.open else {
            return;
        };
        let mut wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        match *wake {
            Some(at) if at <= Instant::now() => {
                *wake = None;
                open.window.request_redraw();
                event_loop.set_control_flow(ControlFlow::Wait);
            }
            Some(at) => event_loop.set_control_flow(ControlFlow::WaitUntil(at)),
            None => event_loop.set_control_flow(ControlFlow::Wait),
        }
    }
}
